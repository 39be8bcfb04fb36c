// platform.h — what the library needs from the platform, apart from the shared-memory ABI
// (layout.h): the ThreadSanitizer switch, clocks without a tail, and page prefaulting.
#ifndef SHMRING_LIB_PLATFORM_H_
#define SHMRING_LIB_PLATFORM_H_

#include <sys/mman.h>
#include <time.h>

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "layout.h"

// SHMRING_TSAN: 1 when compiled with ThreadSanitizer (GCC or clang).
#if defined(__SANITIZE_THREAD__)
#define SHMRING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMRING_TSAN 1
#endif
#endif
#ifndef SHMRING_TSAN
#define SHMRING_TSAN 0
#endif

namespace shmring::internal {

// NowRealtimeNs: CLOCK_REALTIME in nanoseconds (timestamps written into the segment).
inline std::uint64_t NowRealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// WallNow is absl::Now() without its tail. absl::Now() extrapolates the cycle counter and now and
// then recalibrates in a slow path that took tens of µs on this project's VM (p99.99 39 µs over
// 200k calls); clock_gettime through the vDSO costs ~25 ns and had no such tail. Every deadline
// check on a wait path uses it.
inline absl::Time WallNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return absl::TimeFromTimespec(ts);
}

// PrefaultDataArea maps every page of the ring into this process's page tables at attach time,
// so the data path never takes a page fault (each first touch of a page costs microseconds, and
// on a fresh ring every frame of the first lap would pay it). MADV_POPULATE_* fills the page
// tables; then every page is also really accessed, because under a hypervisor with shadow page
// tables the first access of each page still exits to the hypervisor: measured on this
// project's VM, ~25 µs once per 4 KiB page of the first lap (every 51st 64 B round trip) with
// populate alone, none after. Reads change nothing; the producer also writes one byte per page
// of the free region [free_from, free_from + free_bytes) (ring positions, wrapping), which no
// consumer reads before the producer commits there (SPSC only; MPMC slots are shared by every
// producer, so MPMC endpoints only read). Pages holding unread frames are only read.
// `capacity`: the data area's bytes (a power of two when free_bytes > 0: positions are masked).
inline void PrefaultDataArea(std::byte* data, std::uint64_t capacity, bool for_writing,
                             std::uint64_t free_from = 0, std::uint64_t free_bytes = 0) {
  (void)madvise(data, capacity, for_writing ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
#if SHMRING_TSAN
  // The touches race (harmlessly: a byte read, or a write to a free byte) with peers in other
  // threads; ThreadSanitizer would report them, and a TSan build is not for speed.
  return;
#endif
  constexpr std::uint64_t kPage = kPageSize;
  for (std::uint64_t offset = 0; offset < capacity; offset += kPage) {
    (void)*static_cast<volatile const std::byte*>(data + offset);
  }
  if (!for_writing || free_bytes == 0) return;
  const std::uint64_t mask = capacity - 1;
  // The first whole page boundary at or after free_from, then one byte per page.
  for (std::uint64_t p = (free_from + kPage - 1) & ~(kPage - 1); p < free_from + free_bytes;
       p += kPage) {
    *static_cast<volatile std::byte*>(data + (p & mask)) = std::byte{0};
  }
}

}  // namespace shmring::internal

#endif  // SHMRING_LIB_PLATFORM_H_
