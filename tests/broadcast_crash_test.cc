// Broadcast crash paths with SIGKILL: a subscriber killed mid-stream (the publisher goes on at
// once, the others miss nothing, a replacement starts where asked); a publisher killed between
// claim and commit (a successor continues the sequence numbers; the half-written frame is never
// delivered).
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "segment.h"
#include "shmring/broadcast.h"
#include "shmring/channel.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::FillSeq;
using testing::IntactSeq;
using testing::Pipe;
using testing::Scaled;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(60);
constexpr std::size_t kSize = 100;

TEST_CASE("subscriber SIGKILLed mid-stream: the publisher goes on, the others miss nothing") {
  ScopedName name("killsub");
  ChannelOptions options;
  options.kind = Kind::kBroadcast;
  options.capacity = 1 << 13;
  options.evict_after = absl::InfiniteDuration();  // only its death may free the publisher
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t frames = Scaled(100'000);
  constexpr std::uint64_t kReadByVictim = 10;
  Pipe victim_ready, other_ready, victim_holding;
  Child victim([&] {
    auto sub = BroadcastSubscriber::Attach(name);
    if (!sub.ok() || !victim_ready.Signal()) return 10;
    for (std::uint64_t i = 0; i < kReadByVictim; ++i) {
      Frame f = sub->read(kGenerous);
      if (!f.ok() || f.sequence != i || sub->release() != Result::kOk) return 11;
    }
    if (!sub->read(kGenerous).ok() || !victim_holding.Signal()) return 12;  // holds frame 10
    pause();
    return 0;
  });
  Child other([&] {
    auto sub = BroadcastSubscriber::Attach(name);
    if (!sub.ok() || !other_ready.Signal()) return 10;
    for (std::uint64_t i = 0; i < frames; ++i) {
      Frame f = sub->read(kGenerous);
      if (!f.ok() || f.sequence != i || !IntactSeq(i, f.data)) return 11;
      if (sub->release() != Result::kOk) return 12;
    }
    return sub->read(kGenerous).result == Result::kClosed && sub->missed() == 0 ? 0 : 13;
  });
  REQUIRE(victim_ready.Await());
  REQUIRE(other_ready.Await());
  auto pub = BroadcastPublisher::Attach(name);
  REQUIRE(pub.ok());
  auto send = [&](std::uint64_t seq) {
    Claim c = pub->claim(kSize, kGenerous);
    REQUIRE(c.ok());
    REQUIRE(c.sequence == seq);
    FillSeq(seq, c.data);
    REQUIRE(pub->commit() == Result::kOk);
  };
  std::uint64_t seq = 0;
  for (; seq <= kReadByVictim; ++seq) send(seq);
  REQUIRE(victim_holding.Await());
  // The ring (64 frames of 128 bytes) fills up behind the victim: the publisher blocks on it.
  for (;; ++seq) {
    Claim c = pub->try_claim(kSize);
    if (c.result == Result::kWouldBlock) break;
    REQUIRE(c.ok());
    FillSeq(seq, c.data);
    REQUIRE(pub->commit() == Result::kOk);
  }
  victim.Kill(SIGKILL);
  CHECK(victim.Wait() == 128 + SIGKILL);
  // Now nothing holds the publisher but the live subscriber.
  const std::uint64_t replaced_at = seq + 1000;
  for (; seq < replaced_at; ++seq) send(seq);
  // A replacement from the latest frame starts at the next one published; one from the oldest at
  // the oldest frame still held.
  auto latest = BroadcastSubscriber::Attach(name, StartAt::kLatest);
  REQUIRE(latest.ok());
  send(seq++);
  Frame f = latest->read(kGenerous);
  REQUIRE(f.ok());
  CHECK(f.sequence == replaced_at);
  CHECK(IntactSeq(replaced_at, f.data));
  CHECK(latest->release() == Result::kOk);
  auto oldest = BroadcastSubscriber::Attach(name, StartAt::kOldest);
  REQUIRE(oldest.ok());
  f = oldest->read(kGenerous);
  REQUIRE(f.ok());
  CHECK(f.sequence <= replaced_at);
  CHECK(f.sequence > kReadByVictim);
  CHECK(IntactSeq(f.sequence, f.data));
  CHECK(oldest->release() == Result::kOk);
  latest = absl::CancelledError("done");
  oldest = absl::CancelledError("done");
  for (; seq < frames; ++seq) send(seq);
  pub->close();
  CHECK(other.Wait() == 0);
  CHECK(pub->counters().producers.evicted == 0);
}

TEST_CASE("publisher SIGKILLed mid-claim: a successor continues the sequence numbers") {
  ScopedName name("killpub");
  ChannelOptions options;
  options.kind = Kind::kBroadcast;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto sub = BroadcastSubscriber::Attach(name);
  REQUIRE(sub.ok());
  constexpr std::uint64_t kFirst = 50;  // more than a ring: the tail has moved
  Pipe claimed;
  Child publisher([&] {
    auto pub = BroadcastPublisher::Attach(name);
    if (!pub.ok()) return 10;
    for (std::uint64_t i = 0; i < kFirst; ++i) {
      Claim c = pub->claim(kSize, kGenerous);
      if (!c.ok()) return 11;
      FillSeq(i, c.data);
      pub->commit();
    }
    Claim c = pub->claim(kSize, kGenerous);
    if (!c.ok()) return 12;
    std::memset(c.data.data(), 0xEE, c.data.size() / 2);  // half written, never committed
    if (!claimed.Signal()) return 13;
    pause();
    return 0;
  });
  std::uint64_t next = 0;
  auto drain = [&] {
    for (;;) {
      Frame f = sub->try_read();
      if (f.result == Result::kWouldBlock) return;
      REQUIRE(f.ok());
      REQUIRE(f.sequence == next);
      REQUIRE(IntactSeq(next, f.data));
      REQUIRE(sub->release() == Result::kOk);
      ++next;
    }
  };
  // Read while the child publishes (the ring holds fewer than kFirst frames).
  REQUIRE(testing::Eventually([&] {
    drain();
    return next == kFirst;
  }));
  REQUIRE(claimed.Await());
  publisher.Kill(SIGKILL);
  CHECK(publisher.Wait() == 128 + SIGKILL);
  drain();
  CHECK(next == kFirst);  // the half-written claim is not delivered
  auto successor = BroadcastPublisher::Attach(name);
  REQUIRE(successor.ok());
  CHECK(successor->next_sequence() == kFirst);
  for (std::uint64_t i = kFirst; i < kFirst + 100; ++i) {
    Claim c = successor->claim(kSize, kGenerous);
    REQUIRE(c.ok());
    REQUIRE(c.sequence == i);
    FillSeq(i, c.data);
    successor->commit();
    drain();
  }
  CHECK(next == kFirst + 100);
  CHECK(successor->counters().producers.takeovers == 1);
}

}  // namespace
}  // namespace shmring
