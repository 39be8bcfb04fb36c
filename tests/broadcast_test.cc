// Broadcast channels (lib/broadcast.cc): every subscriber reads every frame, in order; the block
// policy never drops a frame for a live subscriber that keeps up, evicts a stopped one after the
// bound and tells it exactly what it missed; the overwrite policy never blocks and never delivers
// a torn frame; late joiners; close; one wake-up for all sleepers; bad inputs.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "segment.h"
#include "shmring/broadcast.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::Eventually;
using testing::Mix;
using testing::Pipe;
using testing::Scaled;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(60);

// Frames of random length (8..8+spread-1 bytes) whose every byte is a function of the sequence
// number: FrameOk detects a torn, misplaced or short frame.
std::size_t FrameSize(std::uint64_t seq, std::size_t spread) { return 8 + Mix(seq) % spread; }
void FillFrame(std::uint64_t seq, std::span<std::byte> out) {
  std::memcpy(out.data(), &seq, 8);
  const std::uint64_t key = Mix(seq ^ 0x5bd1e995);
  for (std::size_t i = 8; i < out.size(); ++i) {
    out[i] = static_cast<std::byte>((key >> ((i % 8) * 8)) ^ i);
  }
}
bool FrameOk(std::uint64_t seq, std::span<const std::byte> in, std::size_t spread) {
  if (in.size() != FrameSize(seq, spread)) return false;
  std::uint64_t got;
  std::memcpy(&got, in.data(), 8);
  if (got != seq) return false;
  const std::uint64_t key = Mix(seq ^ 0x5bd1e995);
  for (std::size_t i = 8; i < in.size(); ++i) {
    if (in[i] != static_cast<std::byte>((key >> ((i % 8) * 8)) ^ i)) return false;
  }
  return true;
}

Result Publish(BroadcastPublisher& p, std::uint64_t seq, std::size_t spread, absl::Time deadline) {
  Claim c = p.claim(FrameSize(seq, spread), deadline);
  if (!c.ok()) return c.result;
  if (c.sequence != seq) return Result::kCorrupted;
  FillFrame(seq, c.data);
  return p.commit();
}

std::string ChannelWith(const ScopedName& name, ChannelOptions options) {
  options.kind = Kind::kBroadcast;
  REQUIRE(CreateChannel(name, options).ok());
  return name.str();
}

bool Stopped(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'T';
}

std::unique_ptr<internal::Segment> OpenReadOnly(std::string_view name) {
  internal::OpenOptions o;
  o.access = internal::Access::kReadOnly;
  auto seg = internal::Segment::Open(name, o);
  REQUIRE(seg.ok());
  return std::move(*seg);
}

TEST_CASE("bad inputs give precise statuses") {
  ScopedName name("bad");
  ChannelOptions options;
  options.kind = Kind::kBroadcast;
  options.max_endpoints = 0;
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  options.max_endpoints = 5000;
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  options.max_endpoints = 2;
  options.evict_after = absl::Seconds(-1);
  absl::Status s = CreateChannel(name, options);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("evict_after") != std::string::npos);
  options.evict_after = kDefaultEvictAfter;
  options.overflow = static_cast<OverflowPolicy>(7);
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  options.overflow = OverflowPolicy::kBlock;
  options.capacity = 4096;
  options.max_frame = 4096;
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  options.max_frame = 0;
  options.capacity = 3000;
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kInvalidArgument);
  ChannelOptions spsc;
  spsc.overflow = OverflowPolicy::kOverwrite;
  s = CreateChannel(name, spsc);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("broadcast channels only") != std::string::npos);

  // Wrong kind, both ways.
  REQUIRE(CreateChannel(name, ChannelOptions{}).ok());
  auto wrong = BroadcastSubscriber::Attach(name);
  CHECK(wrong.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(wrong.status().message()).find("is an SPSC channel, opened as broadcast") !=
        std::string::npos);
  REQUIRE(RemoveChannel(name).ok());
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  CHECK(ChannelKind(name).value() == Kind::kBroadcast);
  CHECK(SpscConsumer::Attach(name).status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(BroadcastSubscriber::Attach("bad name!").status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(BroadcastPublisher::Attach("/shmring-test-no-such").status().code() ==
        absl::StatusCode::kNotFound);

  // Too many subscribers; a second live publisher.
  auto s1 = BroadcastSubscriber::Attach(name);
  auto s2 = BroadcastSubscriber::Attach(name);
  REQUIRE((s1.ok() && s2.ok()));
  auto s3 = BroadcastSubscriber::Attach(name);
  CHECK(s3.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(std::string(s3.status().message()).find("all 2 subscriber entries") != std::string::npos);
  auto p1 = BroadcastPublisher::Attach(name);
  REQUIRE(p1.ok());
  Child second([&] {
    auto p2 = BroadcastPublisher::Attach(name);
    if (p2.ok()) return 1;
    if (p2.status().code() != absl::StatusCode::kFailedPrecondition) return 2;
    if (std::string(p2.status().message()).find("publisher role is held by pid") ==
        std::string::npos) {
      return 3;
    }
    return 0;
  });
  CHECK(second.Wait() == 0);
  // A subscriber that leaves frees its entry.
  s2 = absl::InternalError("gone");
  CHECK(BroadcastSubscriber::Attach(name).ok());
  // Frames too large; unknown StartAt.
  CHECK(p1->try_claim(p1->max_frame() + 1).result == Result::kTooLarge);
  CHECK(BroadcastSubscriber::Attach(name, static_cast<StartAt>(9)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ToString(Result::kLapped) == "Lapped");
  CHECK(ToStatus(Result::kLapped).code() == absl::StatusCode::kDataLoss);
}

TEST_CASE("every subscriber gets every frame; late joiners start where asked; close drains") {
  ScopedName name("basic");
  ChannelOptions options;
  options.capacity = 4096;
  ChannelWith(name, options);
  auto pub = BroadcastPublisher::Attach(name);
  REQUIRE(pub.ok());
  CHECK(pub->overflow() == OverflowPolicy::kBlock);
  auto a = BroadcastSubscriber::Attach(name);
  auto b = BroadcastSubscriber::Attach(name);
  REQUIRE((a.ok() && b.ok()));
  for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(Publish(*pub, i, 40, absl::Now()) == Result::kOk);
  auto latest = BroadcastSubscriber::Attach(name, StartAt::kLatest);
  auto oldest = BroadcastSubscriber::Attach(name, StartAt::kOldest);
  REQUIRE((latest.ok() && oldest.ok()));
  CHECK(latest->try_read().result == Result::kWouldBlock);
  for (std::uint64_t i = 0; i < 10; ++i) {
    for (BroadcastSubscriber* s : {&*a, &*b, &*oldest}) {
      Frame f = s->try_read();
      REQUIRE(f.ok());
      CHECK(f.sequence == i);
      CHECK(FrameOk(i, f.data, 40));
      CHECK(s->intact());
      CHECK(s->release() == Result::kOk);
    }
  }
  REQUIRE(Publish(*pub, 10, 40, absl::Now()) == Result::kOk);
  // Copying receive, a buffer too small (the frame stays unread), then a large enough one.
  std::byte small[4];
  Received r = latest->try_receive(small);
  CHECK(r.result == Result::kTooLarge);
  CHECK(r.size == FrameSize(10, 40));
  std::vector<std::byte> buffer(pub->max_frame());
  r = latest->try_receive(buffer);
  REQUIRE(r.ok());
  CHECK(r.sequence == 10);
  CHECK(r.missed == 0);
  CHECK(FrameOk(10, std::span(buffer).first(r.size), 40));
  pub->close();
  CHECK(pub->try_claim(8).result == Result::kClosed);
  for (BroadcastSubscriber* s : {&*a, &*b, &*oldest}) {
    Frame f = s->read(kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == 10);
    CHECK(s->release() == Result::kOk);
    CHECK(s->read(kGenerous).result == Result::kClosed);
  }
  CHECK(latest->receive(buffer, kGenerous).result == Result::kClosed);
  const ChannelCounters counters = pub->counters();
  CHECK(counters.producers.frames == 11);
  CHECK(counters.consumers.frames == 11 * 3 + 1);
  CHECK(counters.consumers.missed == 0);
}

TEST_CASE("overwrite: exact lap counts, a frame overwritten while held is never delivered") {
  ScopedName name("lap");
  ChannelOptions options;
  options.capacity = 4096;
  options.overflow = OverflowPolicy::kOverwrite;
  ChannelWith(name, options);
  auto pub = BroadcastPublisher::Attach(name);
  auto sub = BroadcastSubscriber::Attach(name);
  REQUIRE((pub.ok() && sub.ok()));
  CHECK(sub->overflow() == OverflowPolicy::kOverwrite);
  // 200 frames of 112 bytes (128 with the header): 32 fit in the ring; the publisher never waits.
  std::vector<std::byte> payload(112);
  for (std::uint64_t i = 0; i < 200; ++i) REQUIRE(pub->try_send(payload) == Result::kOk);
  Frame f = sub->try_read();
  REQUIRE(f.result == Result::kLapped);
  CHECK(f.sequence == 0);
  const std::uint64_t missed = sub->last_missed();
  CHECK(missed >= 200 - 32);
  f = sub->try_read();
  REQUIRE(f.ok());
  CHECK(f.sequence == missed);  // continues at the oldest frame still held
  CHECK(sub->release() == Result::kOk);
  // Hold a frame, let the publisher lap it: release says so, the next read gives the exact count.
  f = sub->try_read();
  REQUIRE(f.ok());
  const std::uint64_t held = f.sequence;
  for (std::uint64_t i = 0; i < 64; ++i) REQUIRE(pub->try_send(payload) == Result::kOk);
  CHECK(!sub->intact());
  CHECK(sub->release() == Result::kLapped);
  f = sub->try_read();
  REQUIRE(f.result == Result::kLapped);
  CHECK(f.sequence == held);
  const std::uint64_t second = sub->last_missed();
  f = sub->try_read();
  REQUIRE(f.ok());
  CHECK(f.sequence == held + second);
  CHECK(sub->release() == Result::kOk);
  CHECK(sub->missed() == missed + second);
  // Copying receive reports the lap with its count.
  for (std::uint64_t i = 0; i < 64; ++i) REQUIRE(pub->try_send(payload) == Result::kOk);
  std::vector<std::byte> buffer(pub->max_frame());
  Received r = sub->try_receive(buffer);
  REQUIRE(r.result == Result::kLapped);
  CHECK(r.sequence == held + second + 1);
  CHECK(r.missed == sub->last_missed());
  r = sub->try_receive(buffer);
  REQUIRE(r.ok());
  CHECK(r.sequence == held + second + 1 + sub->last_missed());
  // release_deferred validates exactly as release(): a frame overwritten while held is reported,
  // never counted as delivered, and the lap count stays exact.
  const std::uint64_t missed_before = sub->missed();
  f = sub->try_read();
  REQUIRE(f.ok());
  const std::uint64_t deferred_held = f.sequence;
  for (std::uint64_t i = 0; i < 64; ++i) REQUIRE(pub->try_send(payload) == Result::kOk);
  CHECK(sub->release_deferred() == Result::kLapped);
  f = sub->try_read();
  REQUIRE(f.result == Result::kLapped);
  CHECK(f.sequence == deferred_held);
  const std::uint64_t third = sub->last_missed();
  std::uint64_t next = deferred_held + third;
  for (int i = 0; i < 3; ++i, ++next) {
    f = sub->try_read();
    REQUIRE(f.ok());
    CHECK(f.sequence == next);
    CHECK(sub->release_deferred() == Result::kOk);
  }
  const ChannelCounters c = sub->counters();
  CHECK(c.consumers.lapped == 4);
  CHECK(c.consumers.missed == sub->missed());
  CHECK(sub->missed() == missed_before + third);
}

// FanOut: 1 publisher -> kFanOut subscriber processes on a lossless channel, frames of random
// length; each subscriber checks every frame (once, in order, byte-exact) and releases it with
// `release(subscriber s, its frame i)`, waiting as `wait(s)` says.
constexpr int kFanOut = 4;
struct FanOut {
  std::uint64_t capacity;
  std::uint64_t frames;
  std::function<Result(BroadcastSubscriber&, int, std::uint64_t)> release;
  std::function<WaitMode(int)> wait = [](int) { return WaitMode::kHybrid; };
  WaitMode publisher_wait = WaitMode::kHybrid;
};

void RunFanOut(const ScopedName& name, const FanOut& run) {
  ChannelOptions options;
  options.capacity = run.capacity;
  options.evict_after = absl::InfiniteDuration();  // lossless even on a loaded machine
  ChannelWith(name, options);
  constexpr std::size_t kSpread = 256;
  std::vector<std::unique_ptr<Pipe>> ready;
  std::vector<std::unique_ptr<Child>> children;
  for (int s = 0; s < kFanOut; ++s) {
    ready.push_back(std::make_unique<Pipe>());
    Pipe* signal = ready.back().get();
    children.push_back(std::make_unique<Child>([&, s, signal] {
      auto sub =
          BroadcastSubscriber::Attach(name, StartAt::kLatest, EndpointOptions{.wait = run.wait(s)});
      if (!sub.ok()) return 10;
      if (!signal->Signal()) return 11;
      for (std::uint64_t i = 0; i < run.frames; ++i) {
        Frame f = sub->read(kGenerous);
        if (!f.ok()) return 12;
        if (f.sequence != i) return 13;
        if (!FrameOk(i, f.data, kSpread)) return 14;
        if (run.release(*sub, s, i) != Result::kOk) return 15;
      }
      return sub->read(kGenerous).result == Result::kClosed && sub->missed() == 0 ? 0 : 16;
    }));
  }
  for (auto& p : ready) REQUIRE(p->Await());
  auto pub = BroadcastPublisher::Attach(name, EndpointOptions{.wait = run.publisher_wait});
  REQUIRE(pub.ok());
  for (std::uint64_t i = 0; i < run.frames; ++i) {
    REQUIRE(Publish(*pub, i, kSpread, absl::Now() + kGenerous) == Result::kOk);
  }
  pub->close();
  for (auto& c : children) CHECK(c->Wait(absl::Minutes(10)) == 0);
  const ChannelCounters counters = pub->counters();
  CHECK(counters.consumers.frames == run.frames * kFanOut);
  CHECK(counters.consumers.missed == 0);
  CHECK(counters.producers.evicted == 0);
}

TEST_CASE("1 publisher -> 4 subscriber processes, lossless, random lengths, checksums") {
  ScopedName name("fanout");
  RunFanOut(name, {.capacity = 1 << 16,
                   .frames = Scaled(2'000'000),
                   .release = [](BroadcastSubscriber& sub, int, std::uint64_t) {
                     return sub.release();
                   }});
}

TEST_CASE("batched release: 4 subscriber processes, lossless, random lengths, checksums") {
  ScopedName name("batched");
  // Subscriber s releases: 0 release() each frame; 1 release_deferred() only (published by reads
  // that find no frame and every quarter of the ring); 2 batches of 32, each ended by release();
  // 3 batches of random length (1..64), each ended by release() without a held frame. 1 and 3
  // sleep when they wait, and so does the publisher: the wake-ups are exercised too. (Each
  // subscriber is a process of its own: `batch_end` is its own copy.)
  std::uint64_t batch_end = 0;
  RunFanOut(name, {.capacity = 1 << 14,
                   .frames = Scaled(500'000),
                   .release =
                       [&](BroadcastSubscriber& sub, int s, std::uint64_t i) {
                         switch (s) {
                           case 0:
                             return sub.release();
                           case 1:
                             return sub.release_deferred();
                           case 2:
                             return i % 32 == 31 ? sub.release() : sub.release_deferred();
                           default: {
                             const Result r = sub.release_deferred();
                             if (r != Result::kOk || i < batch_end) return r;
                             batch_end = i + 1 + Mix(i) % 64;
                             return sub.release();  // publishes the batch
                           }
                         }
                       },
                   .wait = [](int s) { return s % 2 == 1 ? WaitMode::kBlock : WaitMode::kHybrid; },
                   .publisher_wait = WaitMode::kBlock});
}

TEST_CASE("one wake-up for all sleeping subscribers, none when nobody sleeps") {
  ScopedName name("wake");
  ChannelOptions options;
  options.capacity = 4096;
  ChannelWith(name, options);
  auto pub = BroadcastPublisher::Attach(name);
  REQUIRE(pub.ok());
  {
    auto awake = BroadcastSubscriber::Attach(name);
    REQUIRE(awake.ok());
    for (std::uint64_t i = 0; i < 100; ++i) {
      REQUIRE(Publish(*pub, i, 40, absl::Now()) == Result::kOk);
      Frame f = awake->try_read();
      REQUIRE(f.ok());
      REQUIRE(awake->release() == Result::kOk);
    }
    CHECK(pub->counters().producers.wakeups == 0);
  }
  constexpr int kSleepers = 3;
  std::vector<std::unique_ptr<Pipe>> ready;
  std::vector<std::unique_ptr<Child>> children;
  for (int s = 0; s < kSleepers; ++s) {
    ready.push_back(std::make_unique<Pipe>());
    Pipe* signal = ready.back().get();
    children.push_back(std::make_unique<Child>([&, signal] {
      auto sub = BroadcastSubscriber::Attach(name, StartAt::kLatest,
                                             EndpointOptions{.wait = WaitMode::kBlock});
      if (!sub.ok() || !signal->Signal()) return 10;
      Frame f = sub->read(kGenerous);
      if (!f.ok() || f.sequence != 100 || !FrameOk(100, f.data, 40)) return 11;
      return sub->release() == Result::kOk ? 0 : 12;
    }));
  }
  for (auto& p : ready) REQUIRE(p->Await());
  auto seg = OpenReadOnly(name);
  // Every subscriber entry (1..) in use reports that it sleeps.
  REQUIRE(Eventually([&] {
    int sleeping = 0;
    for (std::uint32_t i = 1; i < seg->geometry().max_endpoints; ++i) {
      sleeping += seg->endpoint(i)->sleeping.load() == 1 ? 1 : 0;
    }
    return sleeping == kSleepers;
  }));
  REQUIRE(Publish(*pub, 100, 40, absl::Now()) == Result::kOk);
  for (auto& c : children) CHECK(c->Wait() == 0);
  CHECK(pub->counters().producers.wakeups == 1);
}

// StrictSmallChannel: a lossless 4 KiB channel that never evicts: 32 frames of 112 bytes (128
// with the header) fill it.
void StrictSmallChannel(const ScopedName& name) {
  ChannelOptions options;
  options.capacity = 4096;
  options.evict_after = absl::InfiniteDuration();
  ChannelWith(name, options);
}

// SleepingPublisher: the body of a publisher process that sends `frames` frames of 112 bytes,
// sleeping (WaitMode::kBlock) whenever the ring is full.
std::function<int()> SleepingPublisher(const ScopedName& name, int frames) {
  return [&name, frames] {
    auto pub = BroadcastPublisher::Attach(name, EndpointOptions{.wait = WaitMode::kBlock});
    if (!pub.ok()) return 10;
    std::vector<std::byte> payload(112);
    for (int i = 0; i < frames; ++i) {
      if (pub->send(payload, kGenerous) != Result::kOk) return 11;
    }
    return 0;
  };
}

TEST_CASE("a blocked publisher is woken by the slowest subscriber's release only") {
  ScopedName name("slowest");
  StrictSmallChannel(name);
  auto slow = BroadcastSubscriber::Attach(name);
  auto fast = BroadcastSubscriber::Attach(name);
  REQUIRE((slow.ok() && fast.ok()));
  Child publisher(SleepingPublisher(name, 40));  // the 33rd frame blocks on `slow`
  auto seg = OpenReadOnly(name);
  std::uint64_t fast_read = 0;
  auto drain_fast = [&] {
    while (true) {
      Frame f = fast->try_read();
      if (!f.ok()) break;
      REQUIRE(fast->release() == Result::kOk);
      ++fast_read;
    }
  };
  // The publisher announces that it sleeps on `slow`'s entry (1: the first subscriber's).
  REQUIRE(Eventually([&] {
    drain_fast();
    return seg->control()->publisher_waits_for.load() == 1 &&
           seg->control()->space_ready.waiting.load() == 1;
  }));
  drain_fast();
  CHECK(fast_read == 32);
  for (int i = 0; i < 40; ++i) {
    Frame f = slow->read(kGenerous);
    REQUIRE(f.ok());
    REQUIRE(slow->release() == Result::kOk);
    drain_fast();
  }
  CHECK(publisher.Wait() == 0);
  drain_fast();
  CHECK(fast_read == 40);
  // Only `slow` (entry 1) woke the publisher; `fast` (entry 2) never issued a wake-up.
  CHECK(seg->endpoint(2)->counters.wakeups.load() == 0);
  CHECK(seg->endpoint(1)->counters.wakeups.load() >= 1);
}

TEST_CASE("a publisher blocked on a batching subscriber is woken when the batch is published") {
  ScopedName name("batchwake");
  StrictSmallChannel(name);
  auto slow = BroadcastSubscriber::Attach(name);
  REQUIRE(slow.ok());
  Child publisher(SleepingPublisher(name, 80));  // the 33rd frame blocks on `slow`
  auto seg = OpenReadOnly(name);
  internal::ControlBlock* control = seg->control();
  const internal::EndpointEntry* entry = seg->endpoint(1);  // `slow`, the only subscriber
  const auto asleep = [&] {
    return control->publisher_waits_for.load() == 1 && control->space_ready.waiting.load() == 1;
  };
  REQUIRE(Eventually(asleep));
  const std::uint64_t full = control->write_position.load();
  CHECK(full == 32 * 128);
  // Deferred releases free nothing for the publisher: it stays asleep, the cursor unpublished.
  for (std::uint64_t i = 0; i < 5; ++i) {
    Frame f = slow->read(kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    REQUIRE(slow->release_deferred() == Result::kOk);
  }
  CHECK(slow->next_sequence() == 5);
  CHECK(entry->cursor_position.load() == 0);
  CHECK(entry->counters.wakeups.load() == 0);
  CHECK(control->write_position.load() == full);
  CHECK(asleep());
  // release() without a held frame publishes the batch and wakes the publisher it names.
  REQUIRE(slow->release() == Result::kOk);
  CHECK(entry->cursor_position.load() == 5 * 128);
  REQUIRE(Eventually([&] { return control->write_position.load() > full; }));
  CHECK(entry->counters.wakeups.load() == 1);
  // A quarter of the ring deferred (8 frames) publishes by itself.
  REQUIRE(Eventually(asleep));
  for (std::uint64_t i = 5; i < 13; ++i) {
    Frame f = slow->read(kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    REQUIRE(slow->release_deferred() == Result::kOk);
  }
  CHECK(entry->cursor_position.load() == 13 * 128);
  // The rest with release_deferred only: the reads that find no frame publish, so the publisher
  // always gets its room and finishes; every frame arrives once, in order.
  for (std::uint64_t i = 13; i < 80; ++i) {
    Frame f = slow->read(kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    REQUIRE(slow->release_deferred() == Result::kOk);
  }
  CHECK(publisher.Wait() == 0);
  CHECK(slow->try_read().result == Result::kWouldBlock);  // and publishes the last batch
  CHECK(entry->cursor_position.load() == control->write_position.load());
  CHECK(slow->counters().consumers.frames == 80);
}

TEST_CASE("SIGSTOPped subscriber: evicted after the bound, others miss nothing, exact count") {
  ScopedName name("stopped");
  ChannelOptions options;
  options.capacity = 1 << 14;
  options.evict_after = absl::Milliseconds(200);
  ChannelWith(name, options);
  constexpr std::size_t kSpread = 200;
  const std::uint64_t frames = Scaled(200'000);
  constexpr std::uint64_t kBeforeStop = 100;
  Pipe stopped_ready, others_ready;
  Child stopped([&] {
    auto sub = BroadcastSubscriber::Attach(name);
    if (!sub.ok()) return 10;
    std::uint64_t received = 0, expected = 0, laps = 0;
    if (!stopped_ready.Signal()) return 11;
    for (;;) {
      Frame f = sub->read(kGenerous);
      if (f.result == Result::kClosed) break;
      if (f.result == Result::kLapped) {
        if (f.sequence != expected) return 12;
        expected += sub->last_missed();
        ++laps;
        continue;
      }
      if (!f.ok() || f.sequence != expected || !FrameOk(expected, f.data, kSpread)) return 13;
      if (sub->release() != Result::kOk) return 14;
      ++received;
      ++expected;
      if (received == kBeforeStop && kill(getpid(), SIGSTOP) != 0) return 15;
    }
    // Exactly: every frame was either received or reported missed.
    if (received + sub->missed() != frames || expected != frames) return 16;
    return laps >= 1 ? 0 : 17;
  });
  Child other([&] {
    auto sub = BroadcastSubscriber::Attach(name);
    if (!sub.ok() || !others_ready.Signal()) return 10;
    for (std::uint64_t i = 0; i < frames; ++i) {
      Frame f = sub->read(kGenerous);
      if (!f.ok() || f.sequence != i || !FrameOk(i, f.data, kSpread)) return 11;
      if (sub->release() != Result::kOk) return 12;
    }
    return sub->read(kGenerous).result == Result::kClosed && sub->missed() == 0 ? 0 : 13;
  });
  REQUIRE(stopped_ready.Await());
  REQUIRE(others_ready.Await());
  auto pub = BroadcastPublisher::Attach(name);
  REQUIRE(pub.ok());
  std::uint64_t seq = 0;
  for (; seq < kBeforeStop; ++seq) {
    REQUIRE(Publish(*pub, seq, kSpread, absl::Now() + kGenerous) == Result::kOk);
  }
  REQUIRE(Eventually([&] { return Stopped(stopped.pid()); }));
  for (; seq < frames; ++seq) {
    REQUIRE(Publish(*pub, seq, kSpread, absl::Now() + kGenerous) == Result::kOk);
    if (seq == frames / 2) CHECK(pub->counters().producers.evicted >= 1);
  }
  pub->close();
  CHECK(other.Wait() == 0);
  stopped.Kill(SIGCONT);
  CHECK(stopped.Wait() == 0);
  const ChannelCounters c = pub->counters();
  CHECK(c.producers.evicted >= 1);
  CHECK(c.consumers.lapped >= 1);
}

TEST_CASE("overwrite with a slow subscriber: received + missed == published, no torn payload") {
  ScopedName name("slowoverwrite");
  ChannelOptions options;
  options.capacity = 1 << 13;
  options.overflow = OverflowPolicy::kOverwrite;
  ChannelWith(name, options);
  constexpr std::size_t kSpread = 700;
  const std::uint64_t frames = Scaled(300'000);
  Pipe ready;
  Child slow([&] {
    auto sub = BroadcastSubscriber::Attach(name);
    if (!sub.ok() || !ready.Signal()) return 10;
    std::vector<std::byte> buffer(sub->max_frame());
    std::uint64_t received = 0, expected = 0, torn_in_place = 0;
    for (std::uint64_t n = 0;; ++n) {
      const bool copy = (n & 1) != 0;
      std::uint64_t seq;
      bool ok;
      if (copy) {
        Received r = sub->receive(buffer, kGenerous);
        if (r.result == Result::kClosed) break;
        if (r.result == Result::kLapped) {
          if (r.sequence != expected || r.missed == 0) return 11;
          expected += r.missed;
          continue;
        }
        if (!r.ok()) return 12;
        seq = r.sequence;
        ok = FrameOk(seq, std::span(buffer).first(r.size), kSpread);
      } else {
        Frame f = sub->read(kGenerous);
        if (f.result == Result::kClosed) break;
        if (f.result == Result::kLapped) {
          if (f.sequence != expected || sub->last_missed() == 0) return 13;
          expected += sub->last_missed();
          continue;
        }
        if (!f.ok()) return 14;
        seq = f.sequence;
        ok = FrameOk(seq, f.data, kSpread);
        if ((n % 64) == 0) usleep(200);  // be slow while holding the frame in place
        if (sub->release() != Result::kOk) {
          ++torn_in_place;  // discarded; the next read reports it among the missed
          continue;
        }
      }
      if (seq != expected) return 15;
      if (!ok) return 16;  // a delivered frame that is torn: never allowed
      ++received;
      ++expected;
      if ((n % 16) == 0) usleep(50);
    }
    if (received + sub->missed() != frames || expected != frames) return 17;
    return sub->missed() > 0 ? 0 : 18;  // it really was lapped
  });
  REQUIRE(ready.Await());
  auto pub = BroadcastPublisher::Attach(name);
  REQUIRE(pub.ok());
  for (std::uint64_t i = 0; i < frames; ++i) {
    Claim c = pub->try_claim(FrameSize(i, kSpread));
    REQUIRE(c.ok());  // the overwrite policy never blocks
    FillFrame(i, c.data);
    REQUIRE(pub->commit() == Result::kOk);
  }
  pub->close();
  CHECK(slow.Wait(absl::Minutes(5)) == 0);
}

TEST_CASE("CloseChannel and ReadChannelCounters from outside a broadcast channel") {
  ScopedName name("outside");
  ChannelOptions options;
  options.capacity = 4096;
  ChannelWith(name, options);
  auto pub = BroadcastPublisher::Attach(name);
  auto sub = BroadcastSubscriber::Attach(name);
  REQUIRE((pub.ok() && sub.ok()));
  REQUIRE(Publish(*pub, 0, 40, absl::Now()) == Result::kOk);
  REQUIRE(CloseChannel(name).ok());
  CHECK(pub->try_claim(8).result == Result::kClosed);
  Frame f = sub->read(kGenerous);
  REQUIRE(f.ok());  // drained first
  CHECK(sub->release() == Result::kOk);
  CHECK(sub->read(kGenerous).result == Result::kClosed);
  absl::StatusOr<ChannelCounters> c = ReadChannelCounters(name);
  REQUIRE(c.ok());
  CHECK(c->producers.frames == 1);
  CHECK(c->consumers.frames == 1);
}

TEST_CASE("reclaim_stale and gc see through a broadcast channel's dead endpoints") {
  ScopedName name("stale");
  ChannelOptions options;
  options.capacity = 4096;
  ChannelWith(name, options);
  Child dead([&] {
    auto sub = BroadcastSubscriber::Attach(name);
    auto pub = BroadcastPublisher::Attach(name);
    if (!sub.ok() || !pub.ok()) return 10;
    pause();
    return 0;
  });
  auto seg = OpenReadOnly(name);
  REQUIRE(Eventually([&] { return seg->EndpointAlive(0) && seg->EndpointAlive(1); }));
  options.kind = Kind::kBroadcast;
  options.reclaim_stale = true;
  CHECK(CreateChannel(name, options).code() == absl::StatusCode::kAlreadyExists);  // live
  dead.Kill(SIGKILL);
  CHECK(dead.Wait() == 128 + SIGKILL);
  CHECK(CreateChannel(name, options).ok());  // dead owners only: replaced
}

}  // namespace
}  // namespace shmring
