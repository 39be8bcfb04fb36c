// spsc_benchmark.cc — Google Benchmark micro-benchmarks of the SPSC fast path, in one process
// and one thread (the cost of the calls themselves, without cross-core traffic; for that see
// shmring-bench).
//
//   build-bench/bench/spsc_benchmark [--benchmark_filter=Empty]
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "shmring/shmring.h"

namespace shmring {
namespace {

// Pair: a fresh channel with both endpoints attached in this process; removed at scope exit.
struct Pair {
  std::string name;
  std::optional<SpscProducer> producer;
  std::optional<SpscConsumer> consumer;

  explicit Pair(benchmark::State& state, std::uint64_t capacity = std::uint64_t{1} << 20) {
    static int counter = 0;
    name = "/shmring-benchmark-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    ChannelOptions options;
    options.capacity = capacity;
    if (absl::Status s = CreateChannel(name, options); !s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    EndpointOptions endpoint;
    endpoint.wait = WaitMode::kSpin;
    auto p = SpscProducer::Attach(name, endpoint);
    auto c = SpscConsumer::Attach(name, endpoint);
    if (!p.ok() || !c.ok()) {
      state.SkipWithError("attach failed");
      return;
    }
    producer.emplace(std::move(*p));
    consumer.emplace(std::move(*c));
  }
  ~Pair() {
    producer.reset();
    consumer.reset();
    (void)RemoveChannel(name);
  }
  bool ok() const { return producer.has_value() && consumer.has_value(); }
};

// BM_ClaimCommitReadRelease: one frame through the zero-copy API: try_claim, commit, try_read,
// release (no payload copy).
void BM_ClaimCommitReadRelease(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    Claim c = pair.producer->try_claim(size);
    benchmark::DoNotOptimize(c.data.data());
    pair.producer->commit();
    Frame f = pair.consumer->try_read();
    benchmark::DoNotOptimize(f.data.data());
    pair.consumer->release();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClaimCommitReadRelease)->Arg(0)->Arg(64)->Arg(4096);

// BM_ClaimCommit: the producer's side alone, 256 frames per burst, then the consumer drains them
// outside the timed region.
void BM_ClaimCommit(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  constexpr int kBurst = 256;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      Claim c = pair.producer->try_claim(size);
      benchmark::DoNotOptimize(c.data.data());
      pair.producer->commit();
    }
    state.PauseTiming();
    for (int i = 0; i < kBurst; ++i) {
      (void)pair.consumer->try_read();
      pair.consumer->release();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_ClaimCommit)->Arg(64);

// BM_ClaimCommitDeferred: as BM_ClaimCommit, publishing once per burst (commit_deferred + flush).
void BM_ClaimCommitDeferred(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  constexpr int kBurst = 256;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      Claim c = pair.producer->try_claim(size);
      benchmark::DoNotOptimize(c.data.data());
      pair.producer->commit_deferred();
    }
    pair.producer->flush();
    state.PauseTiming();
    for (int i = 0; i < kBurst; ++i) {
      (void)pair.consumer->try_read();
      pair.consumer->release();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_ClaimCommitDeferred)->Arg(64);

// BM_ReadRelease: the consumer's side alone, 256 frames per burst prepared outside the timing.
void BM_ReadRelease(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  constexpr int kBurst = 256;
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < kBurst; ++i) {
      (void)pair.producer->try_claim(size);
      pair.producer->commit();
    }
    state.ResumeTiming();
    for (int i = 0; i < kBurst; ++i) {
      Frame f = pair.consumer->try_read();
      benchmark::DoNotOptimize(f.data.data());
      pair.consumer->release();
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_ReadRelease)->Arg(64);

// BM_ReadReleaseDeferred: as BM_ReadRelease, publishing the releases once per burst
// (release_deferred, then a read that finds the ring empty publishes them).
void BM_ReadReleaseDeferred(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  constexpr int kBurst = 256;
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < kBurst; ++i) {
      (void)pair.producer->try_claim(size);
      pair.producer->commit();
    }
    state.ResumeTiming();
    for (int i = 0; i < kBurst; ++i) {
      Frame f = pair.consumer->try_read();
      benchmark::DoNotOptimize(f.data.data());
      pair.consumer->release_deferred();
    }
    benchmark::DoNotOptimize(pair.consumer->try_read().result);  // empty: publishes
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_ReadReleaseDeferred)->Arg(64);

// BM_SendReceive: the copying API, payload copied in and out.
void BM_SendReceive(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> in(size, std::byte{1}), out(size);
  for (auto _ : state) {
    if (pair.producer->try_send(in) != Result::kOk) state.SkipWithError("try_send");
    Received r = pair.consumer->try_receive(out);
    benchmark::DoNotOptimize(r.size);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}
BENCHMARK(BM_SendReceive)->Arg(64)->Arg(4096)->Arg(65536);

// BM_TryReadEmpty: polling an empty ring, what a spinning consumer does while it waits.
void BM_TryReadEmpty(benchmark::State& state) {
  Pair pair(state);
  if (!pair.ok()) return;
  for (auto _ : state) {
    Frame f = pair.consumer->try_read();
    benchmark::DoNotOptimize(f.result);
  }
}
BENCHMARK(BM_TryReadEmpty);

}  // namespace
}  // namespace shmring

BENCHMARK_MAIN();
