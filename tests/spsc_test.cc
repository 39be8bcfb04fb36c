// SPSC ring between real processes (fork): bulk transfer with checksums and contiguous sequence
// numbers, blocking both ways with deadlines, end-of-stream, wait modes, bad frames.
#include "shmring/spsc.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <random>

#include "layout.h"
#include "shmring/channel.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::CounterSum;
using testing::Eventually;
using testing::Mix;
using testing::Pipe;
using testing::Scaled;
using testing::ScopedName;
using testing::SomebodySleepsOn;
using testing::WakeWord;

constexpr absl::Duration kGenerous = absl::Seconds(60);

// The payload of frame `seq` is a function of seq alone, so the consumer can check every byte.
std::size_t SizeOf(std::uint64_t seq, std::size_t max) { return Mix(seq) % (max + 1); }
void Fill(std::uint64_t seq, std::span<std::byte> out) {
  std::uint64_t state = Mix(seq ^ 0xABCDEF);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i % 8 == 0) state = Mix(state);
    out[i] = static_cast<std::byte>(state >> (8 * (i % 8)));
  }
}
bool Check(std::uint64_t seq, std::span<const std::byte> in) {
  std::uint64_t state = Mix(seq ^ 0xABCDEF);
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (i % 8 == 0) state = Mix(state);
    if (in[i] != static_cast<std::byte>(state >> (8 * (i % 8)))) return false;
  }
  return true;
}

EndpointOptions Wait(WaitMode mode) {
  EndpointOptions o;
  o.wait = mode;
  o.spin_iterations = 2000;
  return o;
}

// ConsumeAndCheck reads until end-of-stream and checks that exactly `count` frames came, each with
// the next sequence number, size_of(seq) bytes and bytes that check(seq, bytes) accepts.
template <typename SizeFn, typename CheckFn>
void ConsumeAndCheck(SpscConsumer& consumer, std::uint64_t count, SizeFn size_of, CheckFn check) {
  std::uint64_t seq = 0, bad_size = 0, bad_bytes = 0, bad_seq = 0;
  for (;;) {
    Frame f = consumer.read(absl::Now() + kGenerous);
    if (f.result == Result::kClosed) break;
    REQUIRE(f.result == Result::kOk);
    bad_seq += f.sequence != seq;
    bad_size += f.data.size() != size_of(seq);
    bad_bytes += !check(seq, f.data);
    consumer.release();
    ++seq;
  }
  CHECK(seq == count);
  CHECK(bad_seq == 0);
  CHECK(bad_size == 0);
  CHECK(bad_bytes == 0);
}

// Producer process: `count` frames of random sizes 0..max, zero-copy, then close().
int Produce(const std::string& name, std::uint64_t count, EndpointOptions options) {
  auto producer = SpscProducer::Attach(name, options);
  if (!producer.ok()) return 10;
  const std::size_t max = producer->max_frame();
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    Claim c = producer->claim(SizeOf(seq, max), absl::Now() + kGenerous);
    if (!c.ok()) return 11;
    if (c.sequence != seq) return 12;
    Fill(seq, c.data);
    producer->commit();
  }
  producer->close();
  return 0;
}

TEST_CASE("10 million frames of random sizes through a small ring, two processes") {
  ScopedName name("bulk");
  ChannelOptions options;
  // 64 KiB ring, frames of 0..2032 bytes (~1 KiB on average): ~150,000 wraps with padding
  // frames, while a consumer descheduled on a busy machine still leaves the producer ~64 frames
  // of room (a 4 KiB ring moved ~4 frames per context switch and crawled under load).
  options.capacity = 64 << 10;
  options.max_frame = 2032;
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t count = Scaled(10'000'000);
  auto mode = GENERATE(WaitMode::kHybrid);
  Child producer([&] { return Produce(name.str(), count, Wait(mode)); });

  auto consumer = SpscConsumer::Attach(name, Wait(mode));
  REQUIRE(consumer.ok());
  const std::size_t max = consumer->max_frame();
  ConsumeAndCheck(
      *consumer, count, [&](std::uint64_t seq) { return SizeOf(seq, max); }, Check);
  CHECK(producer.Wait() == 0);
}

TEST_CASE("every wait mode delivers everything, copying API") {
  auto mode = GENERATE(WaitMode::kSpin, WaitMode::kBlock, WaitMode::kHybrid);
  CAPTURE(static_cast<int>(mode));
  ScopedName name("modes");
  ChannelOptions options;
  options.capacity = 8192;
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t count = Scaled(200'000);
  Child producer([&] {
    auto p = SpscProducer::Attach(name, Wait(mode));
    if (!p.ok()) return 10;
    std::vector<std::byte> buf(p->max_frame());
    for (std::uint64_t seq = 0; seq < count; ++seq) {
      std::span<std::byte> payload(buf.data(), SizeOf(seq, 300));
      Fill(seq, payload);
      if (p->send(payload, absl::Now() + kGenerous) != Result::kOk) return 11;
    }
    p->close();
    return 0;
  });
  auto consumer = SpscConsumer::Attach(name, Wait(mode));
  REQUIRE(consumer.ok());
  std::vector<std::byte> buf(consumer->max_frame());
  std::uint64_t seq = 0, bad = 0;
  for (;;) {
    Received r = consumer->receive(buf, absl::Now() + kGenerous);
    if (r.result == Result::kClosed) break;
    REQUIRE(r.result == Result::kOk);
    bad += r.sequence != seq || r.size != SizeOf(seq, 300) ||
           !Check(seq, std::span<const std::byte>(buf.data(), r.size));
    ++seq;
  }
  CHECK(seq == count);
  CHECK(bad == 0);
  CHECK(producer.Wait() == 0);
}

TEST_CASE("empty ring: try_read would block, read times out at its deadline") {
  ScopedName name("empty");
  REQUIRE(CreateChannel(name, {}).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name, Wait(WaitMode::kBlock));
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  CHECK(consumer->try_read().result == Result::kWouldBlock);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(50);
  CHECK(consumer->read(deadline).result == Result::kTimeout);
  CHECK(absl::Now() >= deadline);
  std::byte buf[8];
  CHECK(consumer->try_receive(buf).result == Result::kWouldBlock);
}

TEST_CASE("full ring: try_claim would block, claim times out, then proceeds once drained") {
  ScopedName name("full");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name, Wait(WaitMode::kBlock));
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  int sent = 0;
  std::byte payload[100] = {};
  while (producer->try_send(payload) == Result::kOk) ++sent;
  CHECK(sent == 4096 / 128);  // 16-byte header + 100 bytes, 16-aligned = 128 bytes a frame
  CHECK(producer->try_claim(100).result == Result::kWouldBlock);
  CHECK(producer->send(payload, absl::Now() + absl::Milliseconds(50)) == Result::kTimeout);
  REQUIRE(consumer->try_read().ok());
  consumer->release();
  CHECK(producer->try_send(payload) == Result::kOk);
}

TEST_CASE("a producer sleeping on a full ring wakes when the consumer process frees room") {
  ScopedName name("fullwake");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name, Wait(WaitMode::kBlock));
  REQUIRE(producer.ok());
  std::byte payload[1000] = {};
  while (producer->try_send(payload) == Result::kOk) {
  }
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name, Wait(WaitMode::kBlock));
    if (!c.ok()) return 10;
    // The producer sleeps on the full ring before any room is freed.
    if (!Eventually([&] { return SomebodySleepsOn(name.str(), WakeWord::kSpaceReady); })) return 13;
    std::uint64_t n = 0;
    for (;;) {
      Frame f = c->read(absl::Now() + kGenerous);
      if (f.result == Result::kClosed) return n == 4 + 100 ? 0 : 12;
      if (!f.ok()) return 11;
      c->release();
      ++n;
    }
  });
  for (int i = 0; i < 100; ++i) {
    REQUIRE(producer->send(payload, absl::Now() + kGenerous) == Result::kOk);
  }
  producer->close();
  CHECK(consumer.Wait() == 0);
}

TEST_CASE("a consumer woken from its futex leaves no wake-up armed: the next frame costs none") {
  ScopedName name("rearm");
  REQUIRE(CreateChannel(name, {}).ok());
  Pipe got_first, sent_second;
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name, Wait(WaitMode::kBlock));
    if (!c.ok()) return 10;
    Frame f = c->read(absl::Now() + kGenerous);  // sleeps until the producer sends
    if (!f.ok() || f.sequence != 0) return 11;
    c->release();
    if (!got_first.Signal()) return 12;
    if (!sent_second.Await()) return 13;
    f = c->try_read();
    return f.ok() && f.sequence == 1 ? 0 : 14;
  });
  // Until the consumer has gone to sleep on the futex (a condition, not a timing assumption).
  REQUIRE(Eventually([&] { return CounterSum(name.str(), &internal::Counters::waits) >= 1; },
                     kGenerous));
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  std::byte payload[8] = {};
  REQUIRE(producer->try_send(payload) == Result::kOk);
  REQUIRE(got_first.Await());
  const std::uint64_t woken = CounterSum(name.str(), &internal::Counters::wakeups);
  // The consumer is awake (blocked on the pipe, not on the ring): nobody to wake.
  REQUIRE(producer->try_send(payload) == Result::kOk);
  // 0 when the first frame arrived while the consumer was between two sleeps (it then found the
  // frame without being woken); otherwise exactly the one wake-up of the first frame.
  if (woken == 1) CHECK(CounterSum(name.str(), &internal::Counters::wakeups) == 1);
  REQUIRE(sent_second.Signal());
  CHECK(consumer.Wait() == 0);
}

TEST_CASE("close: a sleeping consumer wakes, drains, then sees end-of-stream") {
  ScopedName name("close");
  REQUIRE(CreateChannel(name, {}).ok());
  Pipe attached;
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name, Wait(WaitMode::kBlock));
    if (!c.ok()) return 10;
    if (!attached.Signal()) return 11;
    std::uint64_t n = 0;
    for (;;) {
      Frame f = c->read(absl::InfiniteFuture());  // no deadline: only close() can end this
      if (f.result == Result::kClosed) break;
      if (!f.ok() || f.sequence != n) return 12;
      c->release();
      ++n;
    }
    if (n != 3) return 13;
    // End-of-stream is sticky.
    return c->try_read().result == Result::kClosed ? 0 : 14;
  });
  REQUIRE(attached.Await());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(Eventually([&] { return SomebodySleepsOn(name.str(), WakeWord::kDataReady); }));
  std::byte payload[10] = {};
  for (int i = 0; i < 3; ++i) REQUIRE(producer->try_send(payload) == Result::kOk);
  producer->close();
  CHECK(producer->try_send(payload) == Result::kClosed);
  CHECK(producer->try_claim(1).result == Result::kClosed);
  CHECK(consumer.Wait() == 0);
}

TEST_CASE("oversize frame -> kTooLarge, nothing written") {
  ScopedName name("oversize");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  std::vector<std::byte> big(producer->max_frame() + 1);
  CHECK(producer->try_claim(big.size()).result == Result::kTooLarge);
  CHECK(producer->try_send(big) == Result::kTooLarge);
  CHECK(producer->send(big, absl::InfiniteFuture()) == Result::kTooLarge);
  CHECK(producer->next_sequence() == 0);
  CHECK(consumer->try_read().result == Result::kWouldBlock);
  // The largest frame fits, wherever the ring's write position is.
  big.pop_back();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(producer->try_send(std::span(big).first(i * 7)) == Result::kOk);
    REQUIRE(producer->try_send(big) == Result::kOk);
    std::vector<std::byte> out(big.size());
    REQUIRE(consumer->try_receive(out).ok());
    Received r = consumer->try_receive(out);
    REQUIRE(r.ok());
    CHECK(r.size == big.size());
  }
}

TEST_CASE("receive into a small buffer -> kTooLarge and the frame stays unread") {
  ScopedName name("smallbuf");
  REQUIRE(CreateChannel(name, {}).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  std::byte payload[64] = {};
  REQUIRE(producer->try_send(payload) == Result::kOk);
  std::byte small[10];
  Received r = consumer->try_receive(small);
  CHECK(r.result == Result::kTooLarge);
  CHECK(r.size == 64);
  std::byte enough[64];
  r = consumer->try_receive(enough);
  CHECK(r.ok());
  CHECK(r.sequence == 0);
}

TEST_CASE("commit of a shorter frame, abort, and reading the same frame twice") {
  ScopedName name("partial");
  REQUIRE(CreateChannel(name, {}).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  Claim c = producer->try_claim(100);
  REQUIRE(c.ok());
  producer->abort();
  CHECK(consumer->try_read().result == Result::kWouldBlock);
  c = producer->try_claim(100);
  REQUIRE(c.ok());
  CHECK(c.sequence == 0);  // the aborted claim used no sequence number
  std::memcpy(c.data.data(), "hello", 5);
  producer->commit(5);
  Frame f = consumer->try_read();
  REQUIRE(f.ok());
  CHECK(f.data.size() == 5);
  CHECK(std::memcmp(f.data.data(), "hello", 5) == 0);
  Frame again = consumer->try_read();
  CHECK(again.data.data() == f.data.data());
  CHECK(consumer->next_sequence() == 0);
  consumer->release();
  CHECK(consumer->next_sequence() == 1);
}

// A payload made of fake frame headers, 16-byte aligned as real ones are: {length 8, flags 0,
// the ready word of a sequence number the consumer will soon expect, either lap parity}. Left in
// the ring from an earlier lap, such bytes sit exactly where a later frame's header goes
// (lib/layout.h, kFrameLapBit).
void FillWithFakeHeaders(std::uint64_t seq, std::span<std::byte> out) {
  for (std::size_t i = 0; i + 16 <= out.size(); i += 16) {
    const std::uint64_t lap = (i / 16) % 2 == 0 ? 0 : internal::kFrameLapBit;
    const internal::FrameHeader fake{8, 0, (seq + 1 + i / 32) | lap};
    std::memcpy(out.data() + i, &fake, sizeof(fake));
  }
}
bool CheckFakeHeaders(std::uint64_t seq, std::span<const std::byte> in) {
  std::vector<std::byte> expect(in.size(), std::byte{0});
  FillWithFakeHeaders(seq, expect);
  // std::ranges::equal, not memcmp: an empty payload's data() may be null (UBSan).
  return in.size() % 16 != 0 || std::ranges::equal(in, expect);
}

TEST_CASE("payloads that look like frame headers never pass for frames in a later lap") {
  ScopedName name("fakeheaders");
  ChannelOptions options;
  options.capacity = 4096;
  options.max_frame = 512;
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t count = Scaled(400'000);
  const auto mode = GENERATE(WaitMode::kSpin, WaitMode::kHybrid);
  // Sizes are multiples of 16 (so every payload chunk is a plausible header slot) and vary, so a
  // frame boundary of one lap lands inside a payload of the next. Some frames are deferred, so
  // batches start with a withheld ready word.
  auto size_of = [](std::uint64_t seq) { return (Mix(seq) % 33) * 16; };
  Child producer([&] {
    auto p = SpscProducer::Attach(name.str(), Wait(mode));
    if (!p.ok()) return 10;
    for (std::uint64_t seq = 0; seq < count; ++seq) {
      Claim c = p->claim(size_of(seq), absl::Now() + kGenerous);
      if (!c.ok() || c.sequence != seq) return 11;
      FillWithFakeHeaders(seq, c.data);
      if (Mix(seq ^ 77) % 4 == 0) {
        p->commit_deferred();
      } else {
        p->commit();
      }
    }
    p->close();
    return 0;
  });
  auto consumer = SpscConsumer::Attach(name, Wait(mode));
  REQUIRE(consumer.ok());
  ConsumeAndCheck(*consumer, count, size_of, CheckFakeHeaders);
  CHECK(producer.Wait() == 0);
}

TEST_CASE("deferred frames stay invisible until published, also across a wrap") {
  ScopedName name("deferred");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  std::byte payload[224] = {};  // 240 bytes a frame: a batch of 3 stays below the quarter of the
                                // ring that publishes a deferred batch by itself
  std::uint64_t expect = 0;
  for (int round = 0; round < 2; ++round) {
    if (round == 1) {
      // Move the write position to 32 bytes before the end (from 720: frames of 2048 and 1296
      // bytes), so the batch's first frame wraps and the batch starts with a padding frame.
      for (std::size_t size : {2032, 1280}) {
        REQUIRE(producer->try_send(std::vector<std::byte>(size)) == Result::kOk);
        REQUIRE(consumer->try_read().sequence == expect++);
        consumer->release();
      }
    }
    for (int i = 0; i < 3; ++i) {
      Claim c = producer->try_claim(sizeof(payload));
      REQUIRE(c.ok());
      producer->commit_deferred();
      CHECK(consumer->try_read().result == Result::kWouldBlock);
    }
    producer->flush();
    for (int i = 0; i < 3; ++i) {
      Frame f = consumer->try_read();
      REQUIRE(f.ok());
      CHECK(f.sequence == expect++);
      consumer->release();
    }
    CHECK(consumer->try_read().result == Result::kWouldBlock);
  }
}

TEST_CASE("release() with no frame held publishes the deferred releases") {
  ScopedName name("release-deferred");
  ChannelOptions options;
  options.capacity = 4096;  // 32 frames of 100 B (128 B each); a quarter is 8 frames
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  std::byte payload[100] = {};
  int sent = 0;
  while (producer->try_send(payload) == Result::kOk) ++sent;
  REQUIRE(sent == 32);
  for (int i = 0; i < 3; ++i) {  // fewer than a quarter of the ring: nothing is published
    REQUIRE(consumer->try_read().ok());
    consumer->release_deferred();
  }
  CHECK(producer->try_claim(100).result == Result::kWouldBlock);
  consumer->release();  // no frame held: publishes the three deferred releases
  for (int i = 0; i < 3; ++i) CHECK(producer->try_send(payload) == Result::kOk);
  CHECK(producer->try_claim(100).result == Result::kWouldBlock);
  consumer->release();  // nothing held, nothing deferred: no effect
  CHECK(producer->try_claim(100).result == Result::kWouldBlock);
  // The frames after the released ones are still there, in order.
  const Frame f = consumer->try_read();
  REQUIRE(f.ok());
  CHECK(f.sequence == 3);
}

// Counters are stored when an endpoint publishes its position (docs/failure-model.md, "Counters"):
// deferred frames and releases count once a publication, or the consumer's detach, covers them.
TEST_CASE("frame counters cover deferred commits and releases once they are published") {
  ScopedName name("counts");
  REQUIRE(CreateChannel(name, ChannelOptions{}).ok());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  const auto counters = [&] {
    const absl::StatusOr<ChannelCounters> c = ReadChannelCounters(name);
    REQUIRE(c.ok());
    return *c;
  };
  for (int i = 0; i < 5; ++i) {
    REQUIRE(producer->try_claim(100).ok());
    producer->commit_deferred();
  }
  producer->flush();
  CHECK(counters().producers.frames == 5);
  CHECK(counters().producers.bytes == 500);
  {
    auto consumer = SpscConsumer::Attach(name);
    REQUIRE(consumer.ok());
    for (int i = 0; i < 2; ++i) {
      REQUIRE(consumer->try_read().ok());
      consumer->release_deferred();
    }
    REQUIRE(consumer->try_read().ok());
    consumer->release();  // publishes the two deferred releases with its own
    CHECK(counters().consumers.frames == 3);
    CHECK(counters().consumers.bytes == 300);
    for (int i = 0; i < 2; ++i) {
      REQUIRE(consumer->try_read().ok());
      consumer->release_deferred();
    }
  }  // detach publishes the rest
  CHECK(counters().consumers.frames == 5);
  CHECK(counters().consumers.bytes == 500);
}

}  // namespace
}  // namespace shmring
