// The MPMC ring between threads of one process (each thread with its own endpoint; the process
// shares one mapping, so ThreadSanitizer sees every access to the slots). Built for the TSan run.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "test_util.h"

namespace shmring {
namespace {

constexpr absl::Duration kGenerous = absl::Seconds(120);

std::uint64_t Count(std::uint64_t n) {
  const char* scale = std::getenv("SHMRING_TEST_SCALE");
  return scale ? static_cast<std::uint64_t>(n * std::atof(scale)) + 1000 : n;
}

TEST_CASE(
    "threads: 3 producers x 3 consumers, exactly once, per-producer order, aborts as gaps, "
    "close") {
  auto mode = GENERATE(WaitMode::kSpin, WaitMode::kBlock, WaitMode::kHybrid);
  CAPTURE(static_cast<int>(mode));
  constexpr int kProducers = 3, kConsumers = 3;
  testing::ScopedName name("threads");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 32;
  options.max_frame = 64;
  REQUIRE(CreateChannel(name, options).ok());
  EndpointOptions eo;
  eo.wait = mode;
  eo.spin_iterations = 200;
  const std::uint64_t count = Count(30000);

  std::vector<MpmcProducer> producers;
  std::vector<MpmcConsumer> consumers;
  for (int i = 0; i < kProducers; ++i) {
    auto p = MpmcProducer::Attach(name, eo);
    REQUIRE(p.ok());
    producers.push_back(std::move(*p));
  }
  for (int i = 0; i < kConsumers; ++i) {
    auto c = MpmcConsumer::Attach(name, eo);
    REQUIRE(c.ok());
    consumers.push_back(std::move(*c));
  }

  // received[c][p]: counters consumer c got from producer p, in arrival order.
  std::vector<std::vector<std::vector<std::uint64_t>>> received(
      kConsumers, std::vector<std::vector<std::uint64_t>>(kProducers));
  std::vector<std::uint64_t> bad(kConsumers, 0), aborted(kProducers, 0), failed(kProducers, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      std::uint64_t last_sequence = 0;
      bool first = true;
      for (;;) {
        Frame f = consumers[c].read(absl::Now() + kGenerous);
        if (f.result == Result::kClosed) return;
        if (!f.ok() || f.data.size() < 12) {
          ++bad[c];
          return;
        }
        std::uint32_t p;
        std::uint64_t counter;
        std::memcpy(&p, f.data.data(), 4);
        std::memcpy(&counter, f.data.data() + 4, 8);
        for (std::size_t i = 12; i < f.data.size(); ++i) {
          bad[c] += f.data[i] != static_cast<std::byte>(counter + p);
        }
        bad[c] += p >= kProducers || f.data.size() != 12 + counter % 50;
        bad[c] += !first && f.sequence <= last_sequence;
        first = false;
        last_sequence = f.sequence;
        if (p < kProducers) received[c][p].push_back(counter);
        consumers[c].release();
      }
    });
  }
  std::vector<std::thread> writers;
  for (int p = 0; p < kProducers; ++p) {
    writers.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < count; ++i) {
        Claim c = producers[p].claim(12 + i % 50, absl::Now() + kGenerous);
        if (!c.ok()) {
          ++failed[p];
          return;
        }
        const std::uint32_t id = static_cast<std::uint32_t>(p);
        std::memcpy(c.data.data(), &id, 4);
        std::memcpy(c.data.data() + 4, &i, 8);
        std::memset(c.data.data() + 12, static_cast<int>(i + id), c.data.size() - 12);
        if (i % 997 == 5) {  // give some claims up: each is a gap, never delivered
          producers[p].abort();
          ++aborted[p];
          continue;
        }
        if (producers[p].commit() != Result::kOk) ++failed[p];
      }
    });
  }
  for (auto& w : writers) w.join();
  producers[0].close();
  for (auto& t : threads) t.join();

  std::uint64_t total = 0, order = 0, missing = 0, twice = 0;
  for (int p = 0; p < kProducers; ++p) {
    CHECK(failed[p] == 0);
    std::vector<int> seen(count, 0);
    for (int c = 0; c < kConsumers; ++c) {
      const auto& got = received[c][p];
      for (std::size_t i = 0; i < got.size(); ++i) {
        if (i > 0 && got[i] <= got[i - 1]) ++order;
        if (got[i] < count) ++seen[got[i]];
      }
      total += got.size();
    }
    for (std::uint64_t i = 0; i < count; ++i) {
      const int want = i % 997 == 5 ? 0 : 1;
      missing += seen[i] < want;
      twice += seen[i] > want;
    }
  }
  for (int c = 0; c < kConsumers; ++c) CHECK(bad[c] == 0);
  CHECK(order == 0);
  CHECK(missing == 0);
  CHECK(twice == 0);
  std::uint64_t gaps = 0;
  for (int p = 0; p < kProducers; ++p) gaps += aborted[p];
  CHECK(total == kProducers * count - gaps);
}

TEST_CASE(
    "threads: close() racing busy producers: every frame whose commit returned kOk is "
    "delivered before end-of-stream, nothing after") {
  for (int round = 0; round < 20; ++round) {
    testing::ScopedName name("closerace");
    ChannelOptions options;
    options.kind = Kind::kMpmc;
    options.capacity = 16;
    options.max_frame = 16;
    REQUIRE(CreateChannel(name, options).ok());
    EndpointOptions eo;
    eo.wait = WaitMode::kHybrid;
    eo.spin_iterations = 100;
    constexpr int kProducers = 2, kConsumers = 2;
    std::vector<MpmcProducer> producers;
    std::vector<MpmcConsumer> consumers;
    for (int i = 0; i < kProducers; ++i) producers.push_back(*MpmcProducer::Attach(name, eo));
    for (int i = 0; i < kConsumers; ++i) consumers.push_back(*MpmcConsumer::Attach(name, eo));
    auto closer = MpmcProducer::Attach(name, eo);
    REQUIRE(closer.ok());
    std::vector<std::uint64_t> sent(kProducers, 0), got(kConsumers, 0), bad(kConsumers, 0);
    std::vector<std::thread> threads;
    for (int p = 0; p < kProducers; ++p) {
      threads.emplace_back([&, p] {
        for (std::uint64_t v = 0;; ++v) {
          const Result r =
              producers[p].send(std::as_bytes(std::span(&v, 1)), absl::Now() + kGenerous);
          if (r != Result::kOk) return;  // kClosed once close() is seen
          ++sent[p];
        }
      });
    }
    for (int c = 0; c < kConsumers; ++c) {
      threads.emplace_back([&, c] {
        for (;;) {
          Frame f = consumers[c].read(absl::Now() + kGenerous);
          if (f.result == Result::kClosed) return;
          if (!f.ok()) {
            ++bad[c];
            return;
          }
          ++got[c];
          consumers[c].release();
        }
      });
    }
    absl::SleepFor(absl::Microseconds(200 * (round % 5)));
    closer->close();
    for (auto& t : threads) t.join();
    CHECK(bad[0] + bad[1] == 0);
    CHECK(got[0] + got[1] == sent[0] + sent[1]);
  }
}

TEST_CASE(
    "threads: a consumer destroyed while holding a frame; the survivor gets it once more "
    "when the producer is stuck behind it, everything else exactly once") {
  testing::ScopedName name("orphan");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 8;
  options.max_frame = 16;
  REQUIRE(CreateChannel(name, options).ok());
  EndpointOptions eo;
  eo.wait = WaitMode::kHybrid;
  eo.spin_iterations = 100;
  auto producer = MpmcProducer::Attach(name, eo);
  auto survivor = MpmcConsumer::Attach(name, eo);
  REQUIRE(producer.ok());
  REQUIRE(survivor.ok());
  const std::uint64_t count = Count(20000);
  std::thread writer([&] {
    for (std::uint64_t i = 0; i < count; ++i) {
      if (producer->send(std::as_bytes(std::span(&i, 1)), absl::Now() + kGenerous) != Result::kOk) {
        return;
      }
    }
    producer->close();
  });
  std::vector<int> seen(count, 0);
  std::uint64_t orphan = count;
  std::thread quitter([&] {
    auto c = MpmcConsumer::Attach(name, eo);
    if (!c.ok()) return;
    for (int i = 0; i < 100; ++i) {
      Frame f = c->read(absl::Now() + kGenerous);
      if (!f.ok()) return;
      ++seen[f.sequence];
      if (i == 99) {
        orphan = f.sequence;  // destroyed below while holding it
        return;
      }
      c->release();
    }
  });
  quitter.join();
  std::uint64_t redelivered = 0;
  for (;;) {
    Frame f = survivor->read(absl::Now() + kGenerous);
    if (f.result == Result::kClosed) break;
    REQUIRE(f.ok());
    std::uint64_t v;
    std::memcpy(&v, f.data.data(), 8);
    CHECK(v == f.sequence);
    if (v < count) ++seen[v];
    redelivered += v == orphan;
    survivor->release();
  }
  writer.join();
  REQUIRE(orphan < count);
  CHECK(redelivered == 1);
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < count; ++i) wrong += seen[i] != (i == orphan ? 2 : 1);
  CHECK(wrong == 0);
}

}  // namespace
}  // namespace shmring
