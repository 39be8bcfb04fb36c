// ring_lines_api — ../shared/experiments/ring_lines.cpp with the spin loops pausing (as
// shmring's and shmring-bench's do) and a fourth layout: shmring's own SPSC channels through the
// public API (try_send / try_receive, spinning with pause), so the bare ring and the library are
// compared in one harness, alternating in blocks of 1000 round trips.
//   floor   : one slot per direction, [seq | payload], reader spins on seq
//   ring-W  : byte ring of FRAME_STRIDE-byte frames, reader spins on the write position W
//   ring-H  : same ring, reader spins on the frame's own sequence word
//   shmring : SpscProducer/SpscConsumer over a RING_BYTES channel
// Build (from the repository root, after a release build in build/):
//   g++ -O2 -std=c++20 -Iinclude -o /tmp/ring_lines_api bench/experiments/ring_lines_api.cpp \
//       -Lbuild/lib -l:libshmring.a $(pkg-config --libs absl_status absl_statusor absl_time)
//       -lpthread
//   /tmp/ring_lines_api 20 80 4096      # ROUNDS FRAME_STRIDE RING_BYTES
// Measured on the 2-core VM (stop 18), fast phase / slow phase, one-way p50:
//   floor 70 / 266 ns, ring-H 95 / 330 ns (1.24-1.36x), shmring 110 / 391 ns (1.47-1.58x).
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>
#include "shmring/shmring.h"
static std::optional<shmring::SpscProducer> gp;
static std::optional<shmring::SpscConsumer> gc;
static std::string gname[2];

static constexpr int kMsg = 64, kBlock = 1000;
static int kFrame = 80, kRing = 1 << 16;
static uint64_t now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000ull + t.tv_nsec;
}
static void pin(int c) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(c, &s);
  sched_setaffinity(0, sizeof s, &s);
}
struct alignas(64) Line {
  std::atomic<uint64_t> v;
};
struct Dir {                            // one direction of one layout
  alignas(64) std::atomic<uint64_t> W;  // ring write position (bytes)
  alignas(64) std::atomic<uint64_t> R;  // ring read position (unused on the hot path: ring never
                                        // fills in ping-pong)
  alignas(64) unsigned char slot[128];  // floor slot: seq at 0, payload at 8
  alignas(64) unsigned char ring[1 << 16];
};
struct Shared {
  Dir d[2];
};
static std::atomic<uint64_t>& at(unsigned char* p) {
  return *reinterpret_cast<std::atomic<uint64_t>*>(p);
}

enum Layout { kFloor, kRingW, kRingH, kShmring };
struct Side {
  uint64_t pos = 0, seq = 0;
};

static void send(Layout L, Dir& d, Side& s, const char* msg) {
  if (L == kShmring) {
    std::span<const std::byte> m(reinterpret_cast<const std::byte*>(msg), kMsg);
    while (gp->try_send(m) != shmring::Result::kOk) __builtin_ia32_pause();
    return;
  }
  ++s.seq;
  if (L == kFloor) {
    std::memcpy(d.slot + 8, msg, kMsg);
    at(d.slot).store(s.seq, std::memory_order_release);
    return;
  }
  unsigned char* f = d.ring + (s.pos & (kRing - 1));
  std::memcpy(f + 16, msg, kMsg);
  uint32_t len = kMsg;
  std::memcpy(f, &len, 4);
  at(f + 8).store(s.seq, std::memory_order_release);
  s.pos += kFrame;
  if ((s.pos & (kRing - 1)) + kFrame > kRing) s.pos += kRing - (s.pos & (kRing - 1));
  d.W.store(s.pos, std::memory_order_release);
  if (L == kShmring) {
    static Line priv;
    priv.v.exchange(0, std::memory_order_acq_rel);
  }
}
static void recv(Layout L, Dir& d, Side& s, char* out) {
  if (L == kShmring) {
    std::span<std::byte> m(reinterpret_cast<std::byte*>(out), kMsg);
    while (!gc->try_receive(m).ok()) __builtin_ia32_pause();
    return;
  }
  ++s.seq;
  if (L == kFloor) {
    while (at(d.slot).load(std::memory_order_acquire) != s.seq) {
      __builtin_ia32_pause();
    }
    std::memcpy(out, d.slot + 8, kMsg);
    return;
  }
  unsigned char* f = d.ring + (s.pos & (kRing - 1));
  uint64_t next = s.pos + kFrame;
  if ((next & (kRing - 1)) + kFrame > kRing) next += kRing - (next & (kRing - 1));
  if (L == kRingW) {
    while (d.W.load(std::memory_order_acquire) < next) {
      __builtin_ia32_pause();
    }
  } else {
    while (at(f + 8).load(std::memory_order_acquire) != s.seq) {
      __builtin_ia32_pause();
    }
  }
  uint32_t len;
  std::memcpy(&len, f, 4);
  std::memcpy(out, f + 16, len);
  s.pos = next;
  if (L == kShmring) {
    static Line priv2;
    priv2.v.exchange(0, std::memory_order_acq_rel);
  }
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 60;
  if (argc > 2) kFrame = std::atoi(argv[2]);
  if (argc > 3) kRing = std::atoi(argv[3]);
  auto* sh = static_cast<Shared*>(
      mmap(nullptr, sizeof(Shared) * 4, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  Shared* per[4] = {sh, sh + 1, sh + 2, sh + 3};
  for (auto* p : per) std::memset(static_cast<void*>(p), 0, sizeof(Shared));
  for (int k = 0; k < 2; k++) {
    gname[k] = "/shmring-exp-" + std::to_string(getpid()) + "-" + std::to_string(k);
    shmring::ChannelOptions o;
    o.capacity = kRing;
    (void)shmring::RemoveChannel(gname[k]);
    if (!shmring::CreateChannel(gname[k], o).ok()) return 1;
  }
  auto attach = [](int out, int in) {
    shmring::EndpointOptions eo;
    eo.wait = shmring::WaitMode::kSpin;
    gp.emplace(std::move(*shmring::SpscProducer::Attach(gname[out], eo)));
    gc.emplace(std::move(*shmring::SpscConsumer::Attach(gname[in], eo)));
  };
  pid_t child = fork();
  if (child == 0) {
    pin(1);
    attach(1, 0);
    Side in[4], out[4];
    char buf[kMsg];
    for (int r = 0; r < rounds; r++)
      for (int L = 0; L < 4; L++)
        for (int i = 0; i < kBlock; i++) {
          recv(Layout(L), per[L]->d[0], in[L], buf);
          send(Layout(L), per[L]->d[1], out[L], buf);
        }
    _exit(0);
  }
  pin(0);
  attach(0, 1);
  Side in[4], out[4];
  char msg[kMsg] = {1}, buf[kMsg];
  std::vector<uint64_t> rtt[4];
  for (int r = 0; r < rounds; r++)
    for (int L = 0; L < 4; L++)
      for (int i = 0; i < kBlock; i++) {
        uint64_t t0 = now_ns();
        send(Layout(L), per[L]->d[0], out[L], msg);
        recv(Layout(L), per[L]->d[1], in[L], buf);
        if (r >= 2) rtt[L].push_back(now_ns() - t0);
      }
  waitpid(child, nullptr, 0);
  for (auto& n : gname) (void)shmring::RemoveChannel(n);
  const char* names[4] = {"floor", "ring-W (poll W)", "ring-H (poll header)",
                          "shmring try_send/try_receive"};
  double f50 = 0;
  for (int L = 0; L < 4; L++) {
    auto& v = rtt[L];
    std::sort(v.begin(), v.end());
    double p50 = v[v.size() / 2] / 2.0, p999 = v[size_t(v.size() * 0.999)] / 2.0;
    if (L == 0) f50 = p50;
    std::printf("%-22s p50 %6.0f ns  p99.9 %7.0f ns  p50/floor %.2fx\n", names[L], p50, p999,
                p50 / f50);
  }
}
