// SPSC crash paths with SIGKILL: a consumer killed while the producer blocks on a full ring, a
// producer killed between claim and commit, a consumer killed asleep.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "segment.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::FillSeq;
using testing::IntactSeq;
using testing::Pipe;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(60);

std::uint64_t ProducerWakeups(const std::string& name) {
  internal::OpenOptions o;
  o.access = internal::Access::kReadOnly;
  auto seg = internal::Segment::Open(name, o);
  REQUIRE(seg.ok());
  return (*seg)->endpoint(0)->counters.wakeups.load() + (*seg)->control()->retired.wakeups.load();
}

TEST_CASE(
    "consumer SIGKILLed while the producer blocks on a full ring: the send returns by its "
    "deadline, a new consumer continues with the next unread frame, nothing lost") {
  ScopedName name("killconsumer");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name, EndpointOptions{.wait = WaitMode::kBlock});
  REQUIRE(producer.ok());
  constexpr std::size_t kSize = 200;
  constexpr std::uint64_t kReleasedByFirst = 5;

  Pipe ready;
  Child first([&] {
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 10;
    for (std::uint64_t i = 0; i < kReleasedByFirst; ++i) {
      Frame f = c->read(absl::Now() + kGenerous);
      if (!f.ok() || f.sequence != i || !IntactSeq(i, f.data)) return 11;
      c->release();
    }
    Frame held = c->read(absl::Now() + kGenerous);  // read, never released: redelivered later
    if (!held.ok()) return 12;
    if (!ready.Signal()) return 13;
    pause();
    return 0;
  });

  std::uint64_t sent = 0;
  auto send_one = [&](absl::Time deadline) {
    Claim c = producer->claim(kSize, deadline);
    if (!c.ok()) return c.result;
    FillSeq(sent, c.data);
    producer->commit();
    ++sent;
    return Result::kOk;
  };
  while (sent <= kReleasedByFirst) REQUIRE(send_one(absl::Now() + kGenerous) == Result::kOk);
  REQUIRE(ready.Await());
  // Fill the ring.
  for (;;) {
    Claim c = producer->try_claim(kSize);
    if (c.result == Result::kWouldBlock) break;
    REQUIRE(c.ok());
    FillSeq(sent++, c.data);
    producer->commit();
  }
  first.Kill(SIGKILL);
  CHECK(first.Wait() == 128 + SIGKILL);
  // The ring is full and its consumer is dead: a blocked send returns at its deadline.
  const absl::Time deadline = absl::Now() + absl::Milliseconds(200);
  CHECK(send_one(deadline) == Result::kTimeout);
  CHECK(absl::Now() >= deadline);

  // A new consumer takes the role over and continues with the first unreleased frame.
  auto second = SpscConsumer::Attach(name);
  REQUIRE(second.ok());
  CHECK(second->next_sequence() == kReleasedByFirst);
  std::uint64_t expect = kReleasedByFirst;
  std::uint64_t torn = 0;
  for (int round = 0; round < 3; ++round) {
    for (;;) {
      Frame f = second->try_read();
      if (f.result == Result::kWouldBlock) break;
      REQUIRE(f.ok());
      CHECK(f.sequence == expect);
      torn += !IntactSeq(expect, f.data);
      second->release();
      ++expect;
    }
    for (int i = 0; i < 7; ++i) REQUIRE(send_one(absl::Now() + kGenerous) == Result::kOk);
  }
  for (Frame f = second->try_read(); f.ok(); f = second->try_read()) {
    CHECK(f.sequence == expect);
    torn += !IntactSeq(expect, f.data);
    second->release();
    ++expect;
  }
  CHECK(expect == sent);
  CHECK(torn == 0);
}

TEST_CASE(
    "producer SIGKILLed between claim and commit: nothing torn, a new producer continues "
    "the sequence") {
  ScopedName name("killproducer");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  Pipe claimed;
  Child producer([&] {
    auto p = SpscProducer::Attach(name);
    if (!p.ok()) return 10;
    for (std::uint64_t i = 0; i < 3; ++i) {
      Claim c = p->claim(100, absl::Now() + kGenerous);
      if (!c.ok()) return 11;
      FillSeq(i, c.data);
      p->commit();
    }
    Claim c = p->claim(100, absl::Now() + kGenerous);
    if (!c.ok()) return 12;
    std::memset(c.data.data(), 0xEE, 50);  // half-written, never committed
    if (!claimed.Signal()) return 13;
    pause();
    return 0;
  });
  REQUIRE(claimed.Await());
  producer.Kill(SIGKILL);
  CHECK(producer.Wait() == 128 + SIGKILL);
  for (std::uint64_t i = 0; i < 3; ++i) {
    Frame f = consumer->try_read();
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    CHECK(IntactSeq(i, f.data));
    consumer->release();
  }
  CHECK(consumer->try_read().result == Result::kWouldBlock);  // the claim never became a frame
  auto next = SpscProducer::Attach(name);
  REQUIRE(next.ok());
  CHECK(next->next_sequence() == 3);
  Claim c = next->try_claim(100);
  REQUIRE(c.ok());
  FillSeq(3, c.data);
  next->commit();
  Frame f = consumer->try_read();
  REQUIRE(f.ok());
  CHECK(f.sequence == 3);
  CHECK(IntactSeq(3, f.data));
}

TEST_CASE(
    "end-of-stream audit: kClosed is never reported past an unreleased frame; a consumer "
    "SIGKILLed holding the last frames of a closed stream hands them to the next, flagged") {
  ScopedName name("closedheld");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  std::byte frame[32];
  for (std::uint64_t seq = 0; seq < 4; ++seq) {
    FillSeq(seq, frame);
    REQUIRE(producer->try_send(frame) == Result::kOk);
  }
  producer->close();
  {
    // In process: the held last frame is returned again, never kClosed, until released.
    auto consumer = SpscConsumer::Attach(name);
    REQUIRE(consumer.ok());
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      REQUIRE(consumer->try_read().ok());
      consumer->release();
    }
    const Frame last = consumer->try_read();
    REQUIRE(last.ok());
    CHECK(last.sequence == 3);
    CHECK_FALSE(last.redelivered);
    CHECK(consumer->try_read().sequence == 3);
    CHECK(consumer->read(absl::Now() + kGenerous).sequence == 3);
    // Detached without releasing: the frame stays (a clean detach is not a death).
  }
  // A consumer that reads frame 3 and dies holding it: the next one reads 3 again, flagged as
  // redelivered, and only then kClosed.
  Pipe holding;
  Child first([&] {
    auto c = SpscConsumer::Attach(name.str());
    if (!c.ok()) return 2;
    const Frame f = c->read(absl::Now() + kGenerous);
    if (!f.ok() || f.sequence != 3 || f.redelivered) return 3;
    holding.Signal();
    pause();
    return 0;
  });
  REQUIRE(holding.Await());
  first.Kill(SIGKILL);
  CHECK(first.Wait() == 128 + SIGKILL);
  auto next = SpscConsumer::Attach(name);
  REQUIRE(next.ok());
  const Frame again = next->read(absl::Now() + kGenerous);
  REQUIRE(again.ok());
  CHECK(again.sequence == 3);
  CHECK(again.redelivered);
  CHECK(IntactSeq(3, again.data));
  CHECK(next->try_read().sequence == 3);  // still held: not kClosed
  next->release();
  CHECK(next->try_read().result == Result::kClosed);
}

TEST_CASE("a consumer killed asleep costs the producer at most one wake-up syscall") {
  ScopedName name("sleepkill");
  REQUIRE(CreateChannel(name, {}).ok());
  Pipe attached;
  Child sleeper([&] {
    auto c = SpscConsumer::Attach(name, EndpointOptions{.wait = WaitMode::kBlock});
    if (!c.ok()) return 10;
    if (!attached.Signal()) return 11;
    (void)c->read(absl::InfiniteFuture());
    pause();
    return 0;
  });
  REQUIRE(attached.Await());
  // Wait until it sleeps (it announced itself in the wake word), then kill it.
  {
    internal::OpenOptions o;
    o.access = internal::Access::kReadOnly;
    auto seg = internal::Segment::Open(name, o);
    REQUIRE(seg.ok());
    const absl::Time give_up = absl::Now() + kGenerous;
    while ((*seg)->control()->data_ready.waiting.load() == 0 && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    REQUIRE((*seg)->control()->data_ready.waiting.load() == 1);
  }
  sleeper.Kill(SIGKILL);
  sleeper.Wait();
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  std::byte payload[32] = {};
  for (int i = 0; i < 1000; ++i) REQUIRE(producer->try_send(payload) == Result::kOk);
  CHECK(ProducerWakeups(name.str()) == 1);
}

}  // namespace
}  // namespace shmring
