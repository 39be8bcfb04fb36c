// futex.h — sleeping and waking on 32-bit words inside the shared segment.
//
// Shared (not FUTEX_PRIVATE_FLAG) futexes, because the waiter and the waker are in different
// processes with different mappings of the same object. std::atomic::wait/notify is not used: it
// may pick private futexes or a process-local table.
#ifndef SHMRING_LIB_FUTEX_H_
#define SHMRING_LIB_FUTEX_H_

#include <cstdint>

#include "absl/time/time.h"
#include "layout.h"

namespace shmring::internal {

// FutexWait sleeps while *word == expected, for at most `timeout` (rounded up to 1 µs).
// Returns on wake-up, timeout, signal or a changed value; the caller re-checks its condition.
void FutexWait(AtomicU32* word, std::uint32_t expected, absl::Duration timeout);

// FutexWake wakes up to `count` sleepers on `word`.
void FutexWake(AtomicU32* word, int count);

// CpuRelax: the spin-loop hint (pause on x86, yield on ARM).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace shmring::internal

#endif  // SHMRING_LIB_FUTEX_H_
