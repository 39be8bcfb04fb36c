#include "futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

namespace shmring::internal {

static_assert(sizeof(AtomicU32) == sizeof(std::uint32_t),
              "the kernel reads the futex word as a plain 32-bit integer");

void FutexWait(AtomicU32* word, std::uint32_t expected, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return;
  timespec ts = absl::ToTimespec(timeout);
  if (ts.tv_sec == 0 && ts.tv_nsec < 1000) ts.tv_nsec = 1000;
  // FUTEX_WAIT (shared) compares *word with `expected` atomically with going to sleep, so a wake
  // that bumped the word after our load cannot be lost. EAGAIN/EINTR/ETIMEDOUT all just return.
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWake(AtomicU32* word, int count) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr,
          0);
}

}  // namespace shmring::internal
