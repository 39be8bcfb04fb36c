// SPSC crash paths with SIGKILL: a consumer killed while the producer blocks on a full ring, a
// producer killed between claim and commit, a consumer killed asleep.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "segment.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "spsc_frame.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::Eventually;
using testing::FillSeq;
using testing::IntactSeq;
using testing::Pipe;
using testing::ScopedName;
using testing::SomebodySleepsOn;
using testing::WakeWord;

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
    "producer SIGKILLed after its frame became ready, before it published write_position: the "
    "next producer adopts the frame and never overwrites it") {
  ScopedName name("adopt");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  Pipe committed;
  Child producer([&] {
    auto p = SpscProducer::Attach(name.str());
    if (!p.ok()) return 10;
    std::byte frame[100];
    for (std::uint64_t i = 0; i < 3; ++i) {
      FillSeq(i, frame);
      if (p->try_send(frame) != Result::kOk) return 11;
    }
    if (!committed.Signal()) return 12;
    pause();
    return 0;
  });
  REQUIRE(committed.Await());
  producer.Kill(SIGKILL);
  CHECK(producer.Wait() == 128 + SIGKILL);
  // What the producer would have left had it died between [P1] and [P4] of frame 3 (lib/spsc.cc):
  // frame 3 written and ready after the published write_position, which still says 3 frames.
  {
    auto seg = internal::Segment::Open(name.str(), {});
    REQUIRE(seg.ok());
    std::byte* data = (*seg)->data();
    const std::uint64_t at = (*seg)->control()->write_position.load();
    REQUIRE(at == 3 * internal::FrameBytes(100));
    std::byte payload[100];
    FillSeq(3, payload);
    std::memcpy(data + at + sizeof(internal::FrameHeader), payload, sizeof(payload));
    const std::uint64_t end = at + internal::FrameBytes(100);
    internal::FrameReadyWord(data, end).store(internal::kFrameNotReady);
    internal::StoreFrameHeader(data, 4096, at, sizeof(payload), 0,
                               internal::ReadyWordFor(3, at, 4096));
  }
  // The consumer sees frame 3 already (it polls ready words, not write_position).
  for (std::uint64_t i = 0; i < 4; ++i) {
    Frame f = consumer->try_read();
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    CHECK(IntactSeq(i, f.data));
    if (i < 3) consumer->release();
  }
  // A new producer continues after frame 3 while the consumer still holds it.
  auto next = SpscProducer::Attach(name);
  REQUIRE(next.ok());
  CHECK(next->next_sequence() == 4);
  std::byte frame[100];
  FillSeq(4, frame);
  REQUIRE(next->try_send(frame) == Result::kOk);
  Frame held = consumer->try_read();
  CHECK(held.sequence == 3);
  CHECK(IntactSeq(3, held.data));
  consumer->release();
  Frame f = consumer->try_read();
  REQUIRE(f.ok());
  CHECK(f.sequence == 4);
  CHECK(IntactSeq(4, f.data));
  consumer->release();
  CHECK(consumer->try_read().result == Result::kWouldBlock);
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

TEST_CASE(
    "release_held: a consumer SIGKILLed with held frames leaves them unread; its successor starts "
    "at the first frame after the last published mark (padding, an empty ring and release() "
    "publish nothing past it)") {
  ScopedName name("held");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  constexpr std::size_t kSize = 200;  // 208-byte frames: the ring wraps (padding) at frame 19
  std::uint64_t sent = 0;
  auto send_some = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Claim c = producer->claim(kSize, absl::Now() + kGenerous);
      REQUIRE(c.ok());
      FillSeq(sent++, c.data);
      producer->commit();
    }
  };
  // A first consumer reads 12 frames normally so that the held ones straddle the wrap.
  {
    auto c = SpscConsumer::Attach(name);
    REQUIRE(c.ok());
    send_some(12);
    for (int i = 0; i < 12; ++i) {
      REQUIRE(c->read(absl::Now() + kGenerous).ok());
      c->release();
    }
  }
  send_some(12);  // frames 12..23; the wrap padding sits between 18 and 19
  constexpr std::uint64_t kConfirmed = 15;  // frames 12..15 are published as released
  Pipe ready;
  Child holder([&] {
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 10;
    ReleaseMark confirmed;
    for (std::uint64_t seq = 12; seq < 24; ++seq) {
      Frame f = c->read(absl::Now() + kGenerous);
      if (!f.ok() || f.sequence != seq || !IntactSeq(seq, f.data)) return 11;
      const ReleaseMark mark = c->release_held();
      if (seq == kConfirmed) confirmed = mark;
    }
    c->publish_release(confirmed);
    c->release();  // nothing held by read(): publishes nothing past the held frames either
    if (c->try_read().result != Result::kWouldBlock) return 12;  // empty: publishes nothing held
    if (!ready.Signal()) return 13;
    pause();
    return 0;
  });
  REQUIRE(ready.Await());
  holder.Kill(SIGKILL);
  CHECK(holder.Wait() == 128 + SIGKILL);

  auto successor = SpscConsumer::Attach(name);
  REQUIRE(successor.ok());
  CHECK(successor->next_sequence() == kConfirmed + 1);
  for (std::uint64_t seq = kConfirmed + 1; seq < sent; ++seq) {
    Frame f = successor->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == seq);
    CHECK(IntactSeq(seq, f.data));
    successor->release();
  }
}

TEST_CASE(
    "release_held: a window of held frames slides through many wraps; publishing the "
    "latest mark frees everything") {
  ScopedName name("heldwindow");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  constexpr std::uint64_t kFrames = 5000;
  constexpr std::size_t kWindow = 8;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::vector<ReleaseMark> window;
  while (received < kFrames) {
    while (sent < kFrames) {
      const std::size_t size = 1 + testing::Mix(sent) % 300;
      Claim c = producer->try_claim(size);
      if (c.result == Result::kWouldBlock) break;
      REQUIRE(c.ok());
      std::memset(c.data.data(), static_cast<int>(sent & 0xff), size);
      producer->commit();
      ++sent;
    }
    Frame f = consumer->try_read();
    if (f.result == Result::kWouldBlock) {
      // The producer is blocked on held room: confirm the oldest half of the window.
      REQUIRE(!window.empty());
      consumer->publish_release(window[window.size() / 2]);
      window.erase(window.begin(), window.begin() + static_cast<long>(window.size() / 2) + 1);
      continue;
    }
    REQUIRE(f.ok());
    REQUIRE(f.sequence == received);
    REQUIRE(f.data.size() == 1 + testing::Mix(received) % 300);
    REQUIRE(static_cast<std::uint8_t>(f.data[0]) == (received & 0xff));
    window.push_back(consumer->release_held());
    ++received;
    if (window.size() == kWindow) {
      consumer->publish_release(window.back());
      window.clear();
    }
  }
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
  REQUIRE(
      Eventually([&] { return SomebodySleepsOn(name.str(), WakeWord::kDataReady); }, kGenerous));
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
