// stream_floor — how fast can any ring stream 64 B messages from one core to the other here, and
// how far is that from the naive ring that issue 12's stream goal (>= 2x naive) is judged against?
// Two processes pinned to CPUs 0 and 1, one direction, 1 MiB of ring (or RING_BYTES), no
// virtual calls. Layouts alternate run by run; each run streams FRAMES messages and reports
// frames/s, and the ratio to the naive run just before it.
//   naive   : shmring-bench's naive ring: 64 B slots, head and tail on their own lines, each send
//             loads tail and stores head, each receive loads head and stores tail.
//   idx32   : the same slots, both indices cached and published every 32 messages (the best a
//             ring without per-frame headers can batch).
//   frame32 : shmring's frame layout without the library: 80 B frames [len | flags | ready word
//             | 64 B], the reader polls each frame's ready word, the writer caches the read
//             position and the reader publishes it every 32 frames. Simpler than shmring's b32
//             stream: every frame's ready word is stored at once (shmring withholds the first
//             of each batch until it publishes), and there is no write_position, no cleared slot
//             after the last frame, no lap bit, no validation, counters, wake checks or calls.
//   shmring : the library's SpscProducer/SpscConsumer: claim + copy + commit_deferred, a commit
//             every 32; read + copy + release_deferred, a release every 32 (shmring-bench's b32
//             stream idiom).
// Messages are stamped 8 sends before they are copied (stamping and copying at once is a
// store-forwarding stall). Build (one command), then run:
//   g++ -O2 -std=c++20 -Iinclude -o /tmp/stream_floor bench/experiments/stream_floor.cpp
//       build/lib/libshmring.a $(pkg-config --libs absl_status absl_statusor absl_time) -lpthread
//   /tmp/stream_floor 7 20000000 1048576     # ROUNDS FRAMES RING_BYTES
// Measured (stop 20, quiet machine in its slow phase: floor hand-off ~220 ns one-way), medians of
// 7 rounds of 20M frames at 1 MiB: naive 22-24M/s; idx32 12.4x naive; frame32 9.4x; shmring
// 4.2x (95M/s). The ring layout is not what limits shmring's stream: the library's per-frame
// path (claim/commit_deferred, read/release_deferred, ~10 ns a frame) is, and the naive ring
// is limited by its per-frame index ping-pong while the consumer keeps up.
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "shmring/shmring.h"

namespace {

constexpr std::size_t kMsg = 64;
constexpr std::uint64_t kBatch = 32;
std::uint64_t g_frames = 4000000;
std::uint64_t g_ring = 1 << 20;
volatile std::size_t g_volatile_size = kMsg;  // memcpy through libc, as the bench's copies go

void Pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  sched_setaffinity(0, sizeof s, &s);
}
inline void Relax() { __builtin_ia32_pause(); }
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct alignas(128) Index {
  std::atomic<std::uint64_t> v;
};
struct Shared {
  Index head, tail, start;
  alignas(128) unsigned char ring[1];  // g_ring bytes follow
};

// Source messages: a ring of 16, stamped 8 ahead of the copy.
struct Source {
  unsigned char m[16][kMsg] = {};
  std::uint64_t n = 0;
  Source() {
    for (; n < 8; ++n) std::memcpy(m[n & 15], &n, 8);
  }
  const unsigned char* Next(std::uint64_t i) {
    std::memcpy(m[n & 15], &n, 8);
    ++n;
    return m[i & 15];
  }
};

bool Check(const unsigned char* out, std::uint64_t i) {
  std::uint64_t v;
  std::memcpy(&v, out, 8);
  return v == i;
}

// ---- naive and idx32: slots of 64 B ----
template <std::uint64_t kPublish>
void SlotsProducer(Shared* s) {
  const std::uint64_t slots = g_ring / kMsg, size = g_volatile_size;
  Source src;
  std::uint64_t head = 0, tail_cache = 0;
  for (std::uint64_t i = 0; i < g_frames; ++i) {
    if (kPublish == 1) {
      while (head - s->tail.v.load(std::memory_order_acquire) >= slots) Relax();
    } else {
      while (head - tail_cache >= slots) {
        tail_cache = s->tail.v.load(std::memory_order_acquire);
        if (head - tail_cache >= slots) Relax();
      }
    }
    std::memcpy(s->ring + (head & (slots - 1)) * kMsg, src.Next(i), size);
    ++head;
    if (kPublish == 1 || head % kPublish == 0 || head == g_frames) {
      s->head.v.store(head, std::memory_order_release);
    }
  }
}
template <std::uint64_t kPublish>
bool SlotsConsumer(Shared* s) {
  const std::uint64_t slots = g_ring / kMsg, size = g_volatile_size;
  unsigned char out[kMsg];
  std::uint64_t tail = 0, head_cache = 0;
  bool ok = true;
  for (std::uint64_t i = 0; i < g_frames; ++i) {
    if (kPublish == 1) {
      while (s->head.v.load(std::memory_order_acquire) == tail) Relax();
    } else {
      while (head_cache == tail) {
        head_cache = s->head.v.load(std::memory_order_acquire);
        if (head_cache == tail) Relax();
      }
    }
    std::memcpy(out, s->ring + (tail & (slots - 1)) * kMsg, size);
    ok &= Check(out, i);
    ++tail;
    if (kPublish == 1 || tail % kPublish == 0) s->tail.v.store(tail, std::memory_order_release);
  }
  return ok;
}

// ---- frame32: 80 B frames, ready word per frame ----
constexpr std::uint64_t kStride = 80;
constexpr std::uint64_t kPad = 1ull << 63;  // padding's ready word: kPad | its position
struct Header {
  std::uint32_t len, flags;
  std::atomic<std::uint64_t> ready;
};
void FrameProducer(Shared* s) {
  const std::uint64_t size = g_volatile_size;
  Source src;
  std::uint64_t pos = 0, read_cache = 0;
  for (std::uint64_t i = 0; i < g_frames; ++i) {
    std::uint64_t off = pos & (g_ring - 1);
    if (off + kStride > g_ring) {  // pad to the end (80 does not divide a power of two)
      auto* h = reinterpret_cast<Header*>(s->ring + off);
      while (pos + (g_ring - off) - read_cache > g_ring) {
        read_cache = s->tail.v.load(std::memory_order_acquire);
        Relax();
      }
      h->len = static_cast<std::uint32_t>(g_ring - off - 16);
      h->flags = 1;
      h->ready.store(kPad | pos, std::memory_order_release);  // unique to this position
      pos += g_ring - off;
      off = 0;
    }
    while (pos + kStride - read_cache > g_ring) {
      read_cache = s->tail.v.load(std::memory_order_acquire);
      if (pos + kStride - read_cache > g_ring) Relax();
    }
    auto* h = reinterpret_cast<Header*>(s->ring + off);
    std::memcpy(s->ring + off + 16, src.Next(i), size);
    h->len = kMsg;
    h->flags = 0;
    h->ready.store(i + 1, std::memory_order_release);
    pos += kStride;
  }
}
bool FrameConsumer(Shared* s) {
  const std::uint64_t size = g_volatile_size;
  unsigned char out[kMsg];
  std::uint64_t pos = 0, released = 0;
  bool ok = true;
  for (std::uint64_t i = 0; i < g_frames; ++i) {
    for (;;) {
      const std::uint64_t off = pos & (g_ring - 1);
      auto* h = reinterpret_cast<Header*>(s->ring + off);
      const std::uint64_t r = h->ready.load(std::memory_order_acquire);
      if (r == (kPad | pos)) {
        pos += g_ring - off;
        continue;
      }
      if (r != i + 1) {
        Relax();
        continue;
      }
      std::memcpy(out, s->ring + off + 16, size);  // (a stale word is an older sequence)
      ok &= Check(out, i);
      pos += kStride;
      break;
    }
    if (++released % kBatch == 0) s->tail.v.store(pos, std::memory_order_release);
  }
  return ok;
}

// ---- shmring ----
std::string g_name;
void LibProducer() {
  shmring::EndpointOptions eo;
  eo.wait = shmring::WaitMode::kSpin;
  auto p = shmring::SpscProducer::Attach(g_name, eo);
  if (!p.ok()) std::abort();
  const std::size_t size = g_volatile_size;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);  // a hang fails, not waits
  Source src;
  for (std::uint64_t i = 0; i < g_frames; ++i) {
    shmring::Claim c = p->claim(size, deadline);
    if (!c.ok()) std::abort();
    std::memcpy(c.data.data(), src.Next(i), size);
    if ((i + 1) % kBatch == 0) {
      p->commit();
    } else {
      p->commit_deferred();
    }
  }
  p->flush();
}
bool LibConsumer(double* t0) {
  shmring::EndpointOptions eo;
  eo.wait = shmring::WaitMode::kSpin;
  auto c = shmring::SpscConsumer::Attach(g_name, eo);
  if (!c.ok()) std::abort();
  *t0 = Now();  // the clock starts after the attach (and its prefault), as for the other rings
  const std::size_t size = g_volatile_size;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);  // a hang fails, not waits
  unsigned char out[kMsg];
  bool ok = true;
  for (std::uint64_t i = 0; i < g_frames; ++i) {
    const shmring::Frame f = c->read(deadline);
    if (!f.ok()) std::abort();
    std::memcpy(out, f.data.data(), size);
    ok &= Check(out, i);
    if ((i + 1) % kBatch == 0) {
      c->release();
    } else {
      c->release_deferred();
    }
  }
  return ok;
}

enum Layout { kNaive, kIdx32, kFrame32, kLib, kLayouts };
const char* kNames[] = {"naive", "idx32", "frame32", "shmring"};

// One run: the child consumes on CPU 1, the parent produces on CPU 0 after a start handshake;
// the child reports the elapsed time through the shared `start` word's neighbour.
double Run(Layout layout, Shared* s) {
  std::memset(static_cast<void*>(s), 0, sizeof(Shared) + g_ring);
  if (layout == kLib) {
    shmring::ChannelOptions o;
    o.capacity = g_ring;
    (void)shmring::RemoveChannel(g_name);
    if (!shmring::CreateChannel(g_name, o).ok()) std::abort();
  }
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const pid_t child = fork();
  if (child == 0) {
    Pin(1);
    s->start.v.store(1);
    double t0 = Now();
    bool ok = true;
    switch (layout) {
      case kNaive:
        ok = SlotsConsumer<1>(s);
        break;
      case kIdx32:
        ok = SlotsConsumer<kBatch>(s);
        break;
      case kFrame32:
        ok = FrameConsumer(s);
        break;
      default:
        ok = LibConsumer(&t0);
        break;
    }
    const double dt = ok ? Now() - t0 : -1;
    if (write(fds[1], &dt, sizeof dt) != sizeof dt) _exit(1);
    _exit(0);
  }
  Pin(0);
  while (s->start.v.load() == 0) Relax();
  switch (layout) {
    case kNaive:
      SlotsProducer<1>(s);
      break;
    case kIdx32:
      SlotsProducer<kBatch>(s);
      break;
    case kFrame32:
      FrameProducer(s);
      break;
    default:
      LibProducer();
      break;
  }
  double dt = -1;
  if (read(fds[0], &dt, sizeof dt) != sizeof dt) dt = -1;
  waitpid(child, nullptr, 0);
  close(fds[0]);
  close(fds[1]);
  if (layout == kLib) (void)shmring::RemoveChannel(g_name);
  if (dt <= 0) {
    std::fprintf(stderr, "%s: run failed (wrong message seen)\n", kNames[layout]);
    std::exit(1);
  }
  return static_cast<double>(g_frames) / dt;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  if (argc > 2) g_frames = std::strtoull(argv[2], nullptr, 10);
  if (argc > 3) g_ring = std::strtoull(argv[3], nullptr, 10);
  // Both index rings publish every 32 frames, so the ring must hold more than 32 frames of 80 B;
  // the masks need a power of two.
  if (g_ring < 4096 || (g_ring & (g_ring - 1)) != 0 || rounds < 1 || g_frames < 1) {
    std::fprintf(stderr, "usage: stream_floor ROUNDS FRAMES RING_BYTES (a power of two >= 4096)\n");
    return 2;
  }
  g_name = "/shmring-exp-stream-" + std::to_string(getpid());
  void* mem = mmap(nullptr, sizeof(Shared) + g_ring, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  auto* s = static_cast<Shared*>(mem);
  std::vector<double> ratio[kLayouts];
  for (int r = 0; r < rounds; ++r) {
    double rate[kLayouts];
    for (int l = 0; l < kLayouts; ++l) rate[l] = Run(static_cast<Layout>(l), s);
    std::printf("round %d:", r);
    for (int l = 0; l < kLayouts; ++l) {
      ratio[l].push_back(rate[l] / rate[kNaive]);
      std::printf("  %s %.1fM/s (%.2fx)", kNames[l], rate[l] / 1e6, rate[l] / rate[kNaive]);
    }
    std::printf("\n");
  }
  std::printf("median ratio to naive:");
  for (int l = 0; l < kLayouts; ++l) {
    std::sort(ratio[l].begin(), ratio[l].end());
    std::printf("  %s %.2fx", kNames[l], ratio[l][ratio[l].size() / 2]);
  }
  std::printf("\n");
  return 0;
}
