// batch_loop — one thread, one 1 MiB SPSC channel: a batch of 32 frames of 64 B committed with
// claim() + copy + commit_deferred() (the last with commit()), then read back with read() + copy +
// release_deferred() (the last with release()), over and over. It times each side's share of a
// frame in the streaming idiom of shmring-bench's 64 B b32 stream, without a second core, so the
// instructions of the batched path show (and, under `perf record -e cpu-clock`, where they go).
// Messages are stamped 8 frames before they are copied: stamping one and copying it at once is a
// store-forwarding stall of the harness (it was in shmring-bench's throughput loop until stop 19).
// Build (one command; the comment splits it in two lines):
//   g++ -O2 -std=c++20 -Iinclude -o /tmp/batch_loop bench/experiments/batch_loop.cpp
//       build/lib/libshmring.a $(pkg-config --libs absl_status absl_statusor absl_time) -lpthread
//   /tmp/batch_loop
// Measured (stop 19, quiet machine, the last of 3 lines, 3 runs): producer 13.9-14.8 ns/frame,
// consumer 12.7-13.6 before the frame counts were stored once per publication; 12.2-13.4
// and 11.2-12.0 after. Stop 20 (another phase of the VM, 3 runs each, interleaved): producer
// 8.7-9.3 -> 7.9-8.1, consumer 8.1-8.2 -> 7.2-7.6 with claim()/read()'s call-free fast paths
// (callgrind: read() 95 -> 67 instructions a frame, claim() 66 -> 44).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "shmring/shmring.h"

int main() {
  const std::string name = "/shmring-exp-batch-" + std::to_string(getpid());
  shmring::ChannelOptions o;
  o.capacity = 1 << 20;
  if (!shmring::CreateChannel(name, o).ok()) return 1;
  shmring::EndpointOptions eo;
  eo.wait = shmring::WaitMode::kSpin;
  auto p = shmring::SpscProducer::Attach(name, eo);
  auto c = shmring::SpscConsumer::Attach(name, eo);
  if (!p.ok() || !c.ok()) return 1;
  std::byte messages[16][64] = {}, out[64];
  // A size the compiler cannot see: the copies go through libc's memcpy, as shmring-bench's do
  // (a constant 64 let GCC pick `rep movs` in one build, which doubled the producer's time).
  volatile std::size_t volatile_size = 64;
  const std::size_t size = volatile_size;
  constexpr int kBatch = 32, kRounds = 300000;
  for (int rep = 0; rep < 3; ++rep) {
    double producer_ns = 0, consumer_ns = 0;
    for (int r = 0; r < kRounds; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kBatch; ++i) {
        std::memcpy(messages[(i + 8) % 16], &i, sizeof(i));  // stamped 8 frames ahead
        const shmring::Claim claim = p->claim(size, absl::InfiniteFuture());
        if (!claim.ok()) return 2;
        std::memcpy(claim.data.data(), messages[i % 16], size);
        if (i + 1 == kBatch) {
          p->commit();
        } else {
          p->commit_deferred();
        }
      }
      const auto t1 = std::chrono::steady_clock::now();
      for (int i = 0; i < kBatch; ++i) {
        const shmring::Frame f = c->read(absl::InfiniteFuture());
        if (!f.ok()) return 3;
        std::memcpy(out, f.data.data(), size);
        if (i + 1 == kBatch) {
          c->release();
        } else {
          c->release_deferred();
        }
      }
      const auto t2 = std::chrono::steady_clock::now();
      producer_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
      consumer_ns += std::chrono::duration<double, std::nano>(t2 - t1).count();
    }
    std::printf("producer %.1f ns/frame  consumer %.1f ns/frame\n", producer_ns / kRounds / kBatch,
                consumer_ns / kRounds / kBatch);
  }
  (void)shmring::RemoveChannel(name);
  return 0;
}
