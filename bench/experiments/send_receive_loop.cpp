// send_receive_loop — one thread, one channel: send() then receive() of a 64-byte frame, over and
// over, through the public API (the blocking calls, so Endpoint::Wait and read()/claim() are on
// the path). No second core is involved: it measures the instructions of a hop, and under
// `perf record -e cpu-clock` shows where they go (how the store-forwarding stalls in read() were
// found, stop 18).
//   g++ -O2 -std=c++20 -Iinclude -o /tmp/send_receive_loop bench/experiments/send_receive_loop.cpp
//   \
//       build/lib/libshmring.a $(pkg-config --libs absl_status absl_statusor absl_time) -lpthread
//   /tmp/send_receive_loop spsc      # or mpmc
// Measured (stop 18, loaded machine, interleaved with the previous build): SPSC through the
// shared library 81.7-84.5 ns vs 96.9-103.4 ns; MPMC 43.5-57.1 ns vs 60.0-71.8 ns.
// Stop 19 (quiet machine, static library, best of 3 lines): SPSC 39.4-44.3 ns at its start,
// 34.5-36.6 ns with the spin loop out of line (WaitSlow), 28-30 ns without SLP vectorisation;
// MPMC 34-41 ns throughout (noise). Stop 20 (3 runs each, interleaved): SPSC 28-31 -> 26-28 ns
// with claim()/read()'s call-free fast paths (callgrind: 5.38G -> 4.51G instructions, -16%).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "shmring/shmring.h"

namespace {

template <typename Producer, typename Consumer>
int Loop(const std::string& name) {
  shmring::EndpointOptions eo;
  eo.wait = shmring::WaitMode::kSpin;
  auto p = Producer::Attach(name, eo);
  auto c = Consumer::Attach(name, eo);
  if (!p.ok() || !c.ok()) return 1;
  std::byte msg[64] = {}, out[64];
  constexpr int kFrames = 5000000;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kFrames; ++i) {
      std::memcpy(msg, &i, sizeof(i));
      if (p->send(msg, absl::InfiniteFuture()) != shmring::Result::kOk) return 2;
      if (!c->receive(out, absl::InfiniteFuture()).ok()) return 3;
    }
    const auto t1 = std::chrono::steady_clock::now();
    std::printf("send+receive %.1f ns\n",
                std::chrono::duration<double, std::nano>(t1 - t0).count() / kFrames);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool mpmc = argc > 1 && std::string(argv[1]) == "mpmc";
  const std::string name = "/shmring-exp-loop-" + std::to_string(getpid());
  shmring::ChannelOptions o;
  if (mpmc) {
    o.kind = shmring::Kind::kMpmc;
    o.capacity = 64;
    o.max_frame = 64;
    o.max_endpoints = 4;
  } else {
    o.capacity = 4096;
  }
  if (!shmring::CreateChannel(name, o).ok()) return 1;
  const int rc = mpmc ? Loop<shmring::MpmcProducer, shmring::MpmcConsumer>(name)
                      : Loop<shmring::SpscProducer, shmring::SpscConsumer>(name);
  (void)shmring::RemoveChannel(name);
  return rc;
}
