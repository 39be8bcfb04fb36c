// MPMC ring between real processes (fork): 4 producers x 4 consumers with exactly-once and
// per-producer order, close/drain with sleeping consumers, endpoint limit, oversize frames, kind
// mismatch, and the single-process contracts (sequence numbers, abort gaps, full/empty, timeouts).
#include "shmring/mpmc.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "segment.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::FillProducerFrame;
using testing::Pipe;
using testing::Scaled;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(120);

// Frames of (producer, counter) (test_util.h): 12..75 bytes.
constexpr std::size_t kSpread = 64;
std::size_t FrameSize(std::uint32_t producer, std::uint64_t counter) {
  return testing::ProducerFrameSize(producer, counter, kSpread);
}
bool Decode(std::span<const std::byte> in, std::uint32_t* producer, std::uint64_t* counter) {
  return testing::DecodeProducerFrame(in, kSpread, producer, counter);
}

// Shared anonymous memory created before fork(): children write, the parent reads after wait.
struct SharedMemory {
  void* base;
  std::size_t size;
  explicit SharedMemory(std::size_t bytes) : size(bytes) {
    base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(base != MAP_FAILED);
  }
  ~SharedMemory() { munmap(base, size); }
};

// What one consumer process saw.
struct Report {
  std::uint64_t received;
  std::uint64_t duplicates;
  std::uint64_t out_of_order;  // per-producer counter or sequence number not increasing
  std::uint64_t torn;
  std::uint64_t bad_result;
};

ChannelOptions Mpmc(std::uint64_t capacity, std::uint32_t max_frame) {
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = capacity;
  options.max_frame = max_frame;
  return options;
}

EndpointOptions Options(WaitMode mode, std::uint32_t spin = 200) {
  EndpointOptions o;
  o.wait = mode;
  o.spin_iterations = spin;
  return o;
}

// Sums a counter over every endpoint entry and the retired counters (opened read-only).
std::uint64_t CounterSum(const std::string& name, internal::AtomicU64 internal::Counters::*field) {
  internal::OpenOptions o;
  o.access = internal::Access::kReadOnly;
  auto seg = internal::Segment::Open(name, o);
  REQUIRE(seg.ok());
  std::uint64_t sum = ((*seg)->control()->retired.*field).load();
  for (std::uint32_t i = 0; i < (*seg)->geometry().max_endpoints; ++i) {
    sum += ((*seg)->endpoint(i)->counters.*field).load();
  }
  return sum;
}

TEST_CASE(
    "4 producer x 4 consumer processes, 1 million frames each: exactly once, in "
    "per-producer order") {
  constexpr std::uint32_t kProducers = 4, kConsumers = 4;
  const std::uint64_t count = Scaled(1'000'000);
  ScopedName name("4x4");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 1024;
  options.max_frame = 96;
  REQUIRE(CreateChannel(name, options).ok());

  const std::size_t bitmap_bytes = (count + 7) / 8;
  const std::size_t per_consumer = sizeof(Report) + kProducers * bitmap_bytes;
  SharedMemory shared(kConsumers * per_consumer);
  auto report = [&](std::uint32_t c) {
    return reinterpret_cast<Report*>(static_cast<std::byte*>(shared.base) + c * per_consumer);
  };
  auto bitmap = [&](std::uint32_t c, std::uint32_t p) {
    return reinterpret_cast<std::uint8_t*>(report(c) + 1) + p * bitmap_bytes;
  };

  std::vector<std::unique_ptr<Child>> consumers;
  for (std::uint32_t c = 0; c < kConsumers; ++c) {
    consumers.push_back(std::make_unique<Child>([&, c] {
      // Half read in place, half copy; a mix of wait modes.
      auto consumer =
          MpmcConsumer::Attach(name, Options(c % 2 == 0 ? WaitMode::kHybrid : WaitMode::kBlock));
      if (!consumer.ok()) return 10;
      Report* r = report(c);
      std::vector<std::uint64_t> next(kProducers, 0);  // lowest counter still acceptable
      std::uint64_t last_sequence = 0;
      bool first = true;
      std::vector<std::byte> buffer(consumer->max_frame());
      for (;;) {
        std::span<const std::byte> data;
        std::uint64_t sequence = 0;
        if (c < 2) {
          Frame f = consumer->read(absl::Now() + kGenerous);
          if (f.result == Result::kClosed) break;
          if (!f.ok()) {
            ++r->bad_result;
            return 11;
          }
          data = f.data;
          sequence = f.sequence;
        } else {
          Received got = consumer->receive(buffer, absl::Now() + kGenerous);
          if (got.result == Result::kClosed) break;
          if (!got.ok()) {
            ++r->bad_result;
            return 12;
          }
          data = std::span<const std::byte>(buffer.data(), got.size);
          sequence = got.sequence;
        }
        std::uint32_t p;
        std::uint64_t counter;
        if (!Decode(data, &p, &counter) || p >= kProducers || counter >= count) {
          ++r->torn;
        } else {
          std::uint8_t& byte = bitmap(c, p)[counter / 8];
          const std::uint8_t bit = static_cast<std::uint8_t>(1u << (counter % 8));
          if ((byte & bit) != 0) ++r->duplicates;
          byte |= bit;
          if (counter < next[p]) ++r->out_of_order;
          next[p] = counter + 1;
        }
        if (!first && sequence <= last_sequence) ++r->out_of_order;
        first = false;
        last_sequence = sequence;
        ++r->received;
        if (c < 2) consumer->release();
      }
      return 0;
    }));
  }
  std::vector<std::unique_ptr<Child>> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.push_back(std::make_unique<Child>([&, p] {
      auto producer =
          MpmcProducer::Attach(name, Options(p % 2 == 0 ? WaitMode::kHybrid : WaitMode::kBlock));
      if (!producer.ok()) return 10;
      for (std::uint64_t i = 0; i < count; ++i) {
        const std::size_t size = FrameSize(p, i);
        if (p < 2) {  // zero-copy
          Claim c = producer->claim(size, absl::Now() + kGenerous);
          if (!c.ok()) return 11;
          FillProducerFrame(p, i, c.data);
          if (producer->commit() != Result::kOk) return 12;
        } else {
          std::byte buffer[128];
          FillProducerFrame(p, i, std::span<std::byte>(buffer, size));
          if (producer->send(std::span<const std::byte>(buffer, size), absl::Now() + kGenerous) !=
              Result::kOk) {
            return 13;
          }
        }
      }
      return 0;
    }));
  }
  for (auto& p : producers) CHECK(p->Wait(absl::Seconds(900)) == 0);
  {
    auto closer = MpmcProducer::Attach(name);
    REQUIRE(closer.ok());
    closer->close();
  }
  for (auto& c : consumers) CHECK(c->Wait(absl::Seconds(300)) == 0);

  std::uint64_t received = 0, duplicates = 0, out_of_order = 0, torn = 0, missing = 0;
  for (std::uint32_t c = 0; c < kConsumers; ++c) {
    received += report(c)->received;
    duplicates += report(c)->duplicates;
    out_of_order += report(c)->out_of_order;
    torn += report(c)->torn;
    CHECK(report(c)->bad_result == 0);
  }
  // Exactly once across consumers: each (producer, counter) bit is set in exactly one bitmap.
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    for (std::uint64_t i = 0; i < count; ++i) {
      int owners = 0;
      for (std::uint32_t c = 0; c < kConsumers; ++c) {
        owners += (bitmap(c, p)[i / 8] >> (i % 8)) & 1;
      }
      missing += owners == 0;
      duplicates += owners > 1 ? owners - 1 : 0;
    }
  }
  CHECK(received == kProducers * count);
  CHECK(missing == 0);
  CHECK(duplicates == 0);
  CHECK(out_of_order == 0);
  CHECK(torn == 0);
  CHECK(CounterSum(name.str(), &internal::Counters::abandoned) == 0);
  CHECK(CounterSum(name.str(), &internal::Counters::redelivered) == 0);
}

TEST_CASE("close: consumers asleep in other processes wake, drain, then all see end-of-stream") {
  constexpr int kConsumers = 3;
  constexpr std::uint64_t kFrames = 500;
  ScopedName name("drain");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 1024;
  options.max_frame = 64;
  REQUIRE(CreateChannel(name, options).ok());
  SharedMemory shared(sizeof(std::uint64_t) * kConsumers);
  auto* got = static_cast<std::uint64_t*>(shared.base);

  std::vector<std::unique_ptr<Child>> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.push_back(std::make_unique<Child>([&, c] {
      auto consumer = MpmcConsumer::Attach(name, Options(WaitMode::kBlock));
      if (!consumer.ok()) return 10;
      for (;;) {
        Frame f = consumer->read(absl::Now() + kGenerous);
        if (f.result == Result::kClosed) break;
        if (!f.ok()) return 11;
        ++got[c];
        consumer->release();
      }
      // End-of-stream is sticky.
      if (consumer->try_read().result != Result::kClosed) return 12;
      return 0;
    }));
  }
  // Wait until all three sleep on the futex.
  {
    internal::OpenOptions o;
    o.access = internal::Access::kReadOnly;
    auto seg = internal::Segment::Open(name, o);
    REQUIRE(seg.ok());
    const absl::Time give_up = absl::Now() + kGenerous;
    int sleeping = 0;
    while (absl::Now() < give_up) {
      sleeping = 0;
      for (std::uint32_t i = 0; i < (*seg)->geometry().max_endpoints; ++i) {
        sleeping += (*seg)->endpoint(i)->sleeping.load() == 1;
      }
      if (sleeping == kConsumers) break;
      absl::SleepFor(absl::Milliseconds(1));
    }
    REQUIRE(sleeping == kConsumers);
  }
  auto producer = MpmcProducer::Attach(name);
  REQUIRE(producer.ok());
  std::byte payload[16] = {};
  for (std::uint64_t i = 0; i < kFrames; ++i) REQUIRE(producer->try_send(payload) == Result::kOk);
  producer->close();
  CHECK(producer->try_send(payload) == Result::kClosed);
  CHECK(producer->try_claim(8).result == Result::kClosed);
  std::uint64_t total = 0;
  for (int c = 0; c < kConsumers; ++c) {
    CHECK(consumers[c]->Wait() == 0);
    total += got[c];
  }
  CHECK(total == kFrames);
}

TEST_CASE(
    "close with a full ring: a frame another live consumer holds delays end-of-stream until "
    "it is released; the release wakes the consumer waiting for the end") {
  ScopedName name("closefull");
  REQUIRE(CreateChannel(name, Mpmc(4, 16)).ok());
  auto producer = MpmcProducer::Attach(name);
  auto holder = MpmcConsumer::Attach(name);
  auto other = MpmcConsumer::Attach(name, Options(WaitMode::kBlock));
  REQUIRE(producer.ok());
  REQUIRE(holder.ok());
  REQUIRE(other.ok());
  std::byte payload[16] = {};
  for (int i = 0; i < 4; ++i) REQUIRE(producer->try_send(payload) == Result::kOk);
  Frame held = holder->try_read();
  REQUIRE(held.ok());
  CHECK(held.sequence == 0);
  REQUIRE(producer->try_send(payload) == Result::kWouldBlock);
  producer->close();
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    Frame f = other->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == seq);
    other->release();
  }
  // Drained, but sequence 0 is still held (its holder may die and it would come back).
  CHECK(other->try_read().result == Result::kWouldBlock);
  CHECK(other->read(absl::Now() + absl::Milliseconds(20)).result == Result::kTimeout);
  // The release, in another process, wakes `other` asleep in read() (kBlock).
  Pipe asleep;
  Child waiter([&] {
    auto late = MpmcConsumer::Attach(name, Options(WaitMode::kBlock));
    if (!late.ok()) return 2;
    asleep.Signal();
    return late->read(absl::Now() + kGenerous).result == Result::kClosed ? 0 : 3;
  });
  REQUIRE(asleep.Await());
  holder->release();
  CHECK(waiter.Wait() == 0);
  CHECK(other->read(absl::Now() + kGenerous).result == Result::kClosed);
  CHECK(holder->try_read().result == Result::kClosed);
  CHECK(CounterSum(name.str(), &internal::Counters::redelivered) == 0);
}

TEST_CASE(
    "finish: producers in two processes finishing together end the stream once, after every "
    "frame; close() still ends it for everyone; counters() reports by role") {
  ScopedName name("finish");
  REQUIRE(CreateChannel(name, Mpmc(64, 16)).ok());
  auto consumer = MpmcConsumer::Attach(name, Options(WaitMode::kBlock));
  REQUIRE(consumer.ok());
  constexpr int kProducers = 2;
  constexpr std::uint64_t kEach = 1000;
  // Every producer attaches before any finishes (MpmcProducer::finish).
  testing::Pipe attached[kProducers], go;
  std::vector<std::unique_ptr<Child>> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(std::make_unique<Child>([&, p] {
      auto producer = MpmcProducer::Attach(name.str());
      if (!producer.ok()) return 2;
      attached[p].Signal();
      if (!go.Await()) return 3;
      for (std::uint64_t i = 0; i < kEach; ++i) {
        const std::uint64_t v = p * kEach + i;
        if (producer->send(std::as_bytes(std::span(&v, 1)), absl::Now() + kGenerous) !=
            Result::kOk) {
          return 4;
        }
      }
      producer->finish();
      const std::uint64_t v = 0;
      return producer->try_send(std::as_bytes(std::span(&v, 1))) == Result::kClosed ? 0 : 5;
    }));
  }
  for (auto& a : attached) REQUIRE(a.Await());
  for (int p = 0; p < kProducers; ++p) REQUIRE(go.Signal());
  std::vector<int> seen(kProducers * kEach);
  std::uint64_t frames = 0;
  for (;;) {
    const Frame f = consumer->read(absl::Now() + kGenerous);
    if (f.result == Result::kClosed) break;
    REQUIRE(f.ok());
    CHECK_FALSE(f.redelivered);
    std::uint64_t v;
    std::memcpy(&v, f.data.data(), sizeof(v));
    REQUIRE(v < seen.size());
    ++seen[v];
    ++frames;
    consumer->release();
  }
  for (auto& p : producers) CHECK(p->Wait() == 0);
  CHECK(frames == kProducers * kEach);
  CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  const ChannelCounters c = consumer->counters();
  CHECK(c.producers.frames == kProducers * kEach);
  CHECK(c.consumers.frames == kProducers * kEach);
  CHECK(c.consumers.redelivered == 0);
  CHECK(c.producers.abandoned + c.consumers.abandoned == 0);
  auto read_back = ReadChannelCounters(name);
  REQUIRE(read_back.ok());
  CHECK(read_back->consumers.frames == c.consumers.frames);
  CHECK(ReadChannelCounters("/shmring-test-no-such-channel").status().code() ==
        absl::StatusCode::kNotFound);
  // Attached after the end: claims return kClosed.
  auto late = MpmcProducer::Attach(name);
  REQUIRE(late.ok());
  CHECK(late->try_claim(8).result == Result::kClosed);
}

TEST_CASE("finish: a finished producer does not end the stream while another one is unfinished") {
  ScopedName name("finishone");
  REQUIRE(CreateChannel(name, Mpmc(8, 16)).ok());
  auto consumer = MpmcConsumer::Attach(name);
  REQUIRE(consumer.ok());
  auto a = MpmcProducer::Attach(name), b = MpmcProducer::Attach(name);
  REQUIRE((a.ok() && b.ok()));
  std::byte payload[8] = {};
  REQUIRE(a->try_claim(8).ok());
  a->finish();  // aborts the outstanding claim: a counted gap
  CHECK(a->try_send(payload) == Result::kClosed);
  CHECK(consumer->try_read().result == Result::kWouldBlock);
  CHECK(consumer->read(absl::Now() + absl::Milliseconds(20)).result == Result::kTimeout);
  REQUIRE(b->try_send(payload) == Result::kOk);
  const Frame f = consumer->read(absl::Now() + kGenerous);
  REQUIRE(f.ok());
  CHECK(f.sequence == 1);
  consumer->release();
  {
    MpmcProducer gone = std::move(*b);  // detached without finishing: it no longer counts
  }
  CHECK(consumer->read(absl::Now() + kGenerous).result == Result::kClosed);
  CHECK(consumer->counters().producers.abandoned == 1);
}

TEST_CASE("sequence numbers are tickets; abort leaves a counted gap; commit of a shorter frame") {
  ScopedName name("basic");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 8;
  options.max_frame = 100;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = MpmcProducer::Attach(name);
  auto consumer = MpmcConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  CHECK(producer->max_frame() == 100);
  CHECK(consumer->max_frame() == 100);
  CHECK(consumer->try_read().result == Result::kWouldBlock);

  Claim c = producer->try_claim(50);
  REQUIRE(c.ok());
  CHECK(c.sequence == 0);
  CHECK(c.data.size() == 50);
  std::memset(c.data.data(), 7, 50);
  CHECK(producer->commit(10) == Result::kOk);
  c = producer->try_claim(20);
  REQUIRE(c.ok());
  CHECK(c.sequence == 1);
  producer->abort();
  const std::byte two[3] = {std::byte{2}, std::byte{2}, std::byte{2}};
  CHECK(producer->try_send(two) == Result::kOk);

  Frame f = consumer->try_read();
  REQUIRE(f.ok());
  CHECK(f.sequence == 0);
  CHECK(f.data.size() == 10);
  CHECK(f.data[9] == std::byte{7});
  Frame again = consumer->try_read();  // the same frame until release()
  CHECK(again.sequence == 0);
  CHECK(again.data.data() == f.data.data());
  consumer->release();
  std::byte buffer[100];
  Received r = consumer->try_receive(buffer);
  REQUIRE(r.ok());
  CHECK(r.sequence == 2);  // ticket 1 was aborted: a visible gap
  CHECK(r.size == 3);
  CHECK(CounterSum(name.str(), &internal::Counters::abandoned) == 1);
  CHECK(consumer->try_read().result == Result::kWouldBlock);
}

TEST_CASE(
    "full ring: try_claim would block, claim times out, then proceeds once drained; "
    "empty ring: read times out") {
  ScopedName name("full");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 4;
  options.max_frame = 32;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = MpmcProducer::Attach(name, Options(WaitMode::kHybrid));
  auto consumer = MpmcConsumer::Attach(name, Options(WaitMode::kHybrid));
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  const absl::Time empty_deadline = absl::Now() + absl::Milliseconds(50);
  CHECK(consumer->read(empty_deadline).result == Result::kTimeout);
  CHECK(absl::Now() >= empty_deadline);
  std::byte payload[32] = {};
  for (int i = 0; i < 4; ++i) REQUIRE(producer->try_send(payload) == Result::kOk);
  CHECK(producer->try_send(payload) == Result::kWouldBlock);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(50);
  CHECK(producer->claim(8, deadline).result == Result::kTimeout);
  CHECK(absl::Now() >= deadline);
  // A frame read but not released still occupies its slot.
  Frame f = consumer->try_read();
  REQUIRE(f.ok());
  CHECK(producer->try_send(payload) == Result::kWouldBlock);
  consumer->release();
  CHECK(producer->try_send(payload) == Result::kOk);
  for (std::uint64_t seq = 1; seq <= 4; ++seq) {
    std::byte buffer[32];
    Received r = consumer->try_receive(buffer);
    REQUIRE(r.ok());
    CHECK(r.sequence == seq);
  }
  CHECK(consumer->try_read().result == Result::kWouldBlock);
}

TEST_CASE("a producer asleep on a full ring in another process wakes when a consumer frees room") {
  ScopedName name("wakeproducer");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 2;
  options.max_frame = 16;
  REQUIRE(CreateChannel(name, options).ok());
  auto consumer = MpmcConsumer::Attach(name);
  REQUIRE(consumer.ok());
  constexpr int kFrames = 200;
  Child producer([&] {
    auto p = MpmcProducer::Attach(name, Options(WaitMode::kBlock));
    if (!p.ok()) return 10;
    std::byte payload[16] = {};
    for (int i = 0; i < kFrames; ++i) {
      if (p->send(payload, absl::Now() + kGenerous) != Result::kOk) return 11;
    }
    return 0;
  });
  for (int i = 0; i < kFrames; ++i) {
    if (i % 50 == 0) absl::SleepFor(absl::Milliseconds(20));  // let the producer fall asleep
    Frame f = consumer->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == static_cast<std::uint64_t>(i));
    consumer->release();
  }
  CHECK(producer.Wait() == 0);
  CHECK(CounterSum(name.str(), &internal::Counters::waits) > 0);
}

TEST_CASE("attaching beyond max_endpoints -> ResourceExhausted; a detached entry is reused") {
  ScopedName name("limit");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 4;
  options.max_endpoints = 3;
  REQUIRE(CreateChannel(name, options).ok());
  auto p1 = MpmcProducer::Attach(name);
  auto p2 = MpmcProducer::Attach(name);
  auto c1 = MpmcConsumer::Attach(name);
  REQUIRE(p1.ok());
  REQUIRE(p2.ok());
  REQUIRE(c1.ok());
  auto c2 = MpmcConsumer::Attach(name);
  CHECK(c2.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(absl::StrContains(c2.status().message(), "3 endpoints"));
  auto p3 = MpmcProducer::Attach(name);
  CHECK(p3.status().code() == absl::StatusCode::kResourceExhausted);
  // Another process counts too.
  Child child([&] {
    auto c = MpmcConsumer::Attach(name);
    return c.status().code() == absl::StatusCode::kResourceExhausted ? 0 : 1;
  });
  CHECK(child.Wait() == 0);
  { auto gone = std::move(*p2); }
  auto c3 = MpmcConsumer::Attach(name);
  CHECK(c3.ok());
}

TEST_CASE("oversize frames: InvalidArgument at creation, kTooLarge on the data path") {
  ScopedName name("oversize");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 4;
  options.max_frame = (16u << 20) + 1;
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  options.max_frame = 64;
  options.capacity = 6;  // not a power of two
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  options.capacity = 4;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = MpmcProducer::Attach(name);
  auto consumer = MpmcConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  std::vector<std::byte> big(65);
  CHECK(producer->try_claim(65).result == Result::kTooLarge);
  CHECK(producer->try_send(big) == Result::kTooLarge);
  CHECK(producer->send(big, absl::Now() + kGenerous) == Result::kTooLarge);
  CHECK(producer->claim(1 << 30, absl::Now() + kGenerous).result == Result::kTooLarge);
  CHECK(consumer->try_read().result == Result::kWouldBlock);  // nothing was written
  REQUIRE(producer->try_send(std::span<const std::byte>(big.data(), 64)) == Result::kOk);
  std::byte small[10];
  Received r = consumer->try_receive(small);
  CHECK(r.result == Result::kTooLarge);
  CHECK(r.size == 64);
  std::byte enough[64];
  r = consumer->try_receive(enough);  // the frame stayed unread
  CHECK(r.ok());
  CHECK(r.sequence == 0);
}

TEST_CASE("opening an SPSC channel as MPMC or the reverse -> FailedPrecondition") {
  ScopedName spsc("kind-spsc");
  ScopedName mpmc("kind-mpmc");
  REQUIRE(CreateChannel(spsc, {}).ok());
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 4;
  REQUIRE(CreateChannel(mpmc, options).ok());
  CHECK(MpmcProducer::Attach(spsc).status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(MpmcConsumer::Attach(spsc).status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(SpscProducer::Attach(mpmc).status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(SpscConsumer::Attach(mpmc).status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(MpmcConsumer::Attach(mpmc).ok());
}

}  // namespace
}  // namespace shmring
