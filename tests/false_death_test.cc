// False death: a process stopped with SIGSTOP for longer than any timeout in the library (several
// times the longest futex sleep, kMaxSleep = 100 ms, and longer than its peers' deadlines), then
// continued, is never treated as dead: its role cannot be taken, the segment cannot be reclaimed,
// nothing it committed, claimed or holds is skipped or handed to someone else.
//
// Liveness is the OFD lock on the endpoint's byte of the segment (lib/segment.h): a stopped
// process keeps its file descriptions, so it keeps its locks. These tests check the consequences
// end to end, with the stop placed at the worst points (between claim and commit, between read and
// release) and at random points under load.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "absl/time/clock.h"
#include "endpoint.h"
#include "segment.h"
#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using absl::StatusCode;
using testing::Child;
using testing::FillSeq;
using testing::IntactSeq;
using testing::Scale;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(60);
// Longer than any timeout of the library: 3.5 times its longest single futex sleep.
const absl::Duration kStopped = internal::kMaxSleep * 7 / 2;
// The peers' deadlines while the victim is stopped (shorter than the stop).
const absl::Duration kPeerDeadline = internal::kMaxSleep * 5 / 2;

// AwaitStopped: waits until `pid` is stopped (it raised SIGSTOP or was sent it).
void AwaitStopped(pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, WUNTRACED) == pid);
  REQUIRE(WIFSTOPPED(status));
}

std::unique_ptr<internal::Segment> OpenReadOnly(const std::string& name) {
  internal::OpenOptions o;
  o.access = internal::Access::kReadOnly;
  auto seg = internal::Segment::Open(name, o);
  REQUIRE(seg.ok());
  return std::move(*seg);
}

// Counter `field` summed over the live entries and the retired counters.
std::uint64_t Total(const std::string& name, internal::AtomicU64 internal::Counters::*field) {
  auto seg = OpenReadOnly(name);
  std::uint64_t total = (seg->control()->retired.*field).load();
  for (std::uint32_t i = 0; i < seg->geometry().max_endpoints; ++i) {
    total += (seg->endpoint(i)->counters.*field).load();
  }
  return total;
}

// While the victim is stopped: it still counts as alive everywhere.
void CheckStillAlive(const std::string& name, std::uint32_t entry) {
  auto seg = OpenReadOnly(name);
  CHECK(seg->EndpointAlive(entry));
  ChannelOptions reclaim;
  reclaim.kind = seg->geometry().kind;
  reclaim.capacity = seg->geometry().capacity;
  reclaim.reclaim_stale = true;
  CHECK(CreateChannel(name, reclaim).code() == StatusCode::kAlreadyExists);
}

TEST_CASE("SPSC: a producer stopped between claim and commit keeps its role and its frame") {
  ScopedName name("fd-spsc-producer");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  constexpr std::uint64_t kBefore = 10, kTotal = 20;
  Child producer([&] {
    auto p = SpscProducer::Attach(name);
    if (!p.ok()) return 10;
    for (std::uint64_t i = 0; i < kTotal; ++i) {
      Claim c = p->claim(100, absl::Now() + kGenerous);
      if (!c.ok() || c.sequence != i) return 11;
      FillSeq(i, c.data);
      if (i == kBefore) raise(SIGSTOP);  // stopped with the claim outstanding
      p->commit();
    }
    p->close();
    return 0;
  });
  AwaitStopped(producer.pid());
  for (std::uint64_t i = 0; i < kBefore; ++i) {
    Frame f = consumer->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    consumer->release();
  }
  // The consumer waits well past the longest sleep: a timeout, nothing skipped.
  const absl::Time deadline = absl::Now() + kStopped;
  CHECK(consumer->read(deadline).result == Result::kTimeout);
  CHECK(absl::Now() >= deadline);
  // The role is not free, the segment is not stale.
  auto second = SpscProducer::Attach(name);
  CHECK(second.status().code() == StatusCode::kFailedPrecondition);
  CHECK(second.status().message().find(std::to_string(producer.pid())) != absl::string_view::npos);
  CheckStillAlive(name.str(), 0);

  producer.Kill(SIGCONT);
  for (std::uint64_t i = kBefore; i < kTotal; ++i) {
    Frame f = consumer->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    CHECK(IntactSeq(i, f.data));
    consumer->release();
  }
  CHECK(consumer->read(absl::Now() + kGenerous).result == Result::kClosed);
  CHECK(producer.Wait() == 0);
  CHECK(Total(name.str(), &internal::Counters::takeovers) == 0);
}

TEST_CASE("SPSC: a consumer stopped holding a frame keeps its role; nothing is redelivered") {
  ScopedName name("fd-spsc-consumer");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  constexpr std::uint64_t kHeld = 5, kTotal = 200;
  constexpr std::size_t kSize = 100;
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 10;
    for (std::uint64_t i = 0;; ++i) {
      Frame f = c->read(absl::Now() + kGenerous);
      if (f.result == Result::kClosed) return i == kTotal ? 0 : 11;
      if (!f.ok() || f.sequence != i || !IntactSeq(i, f.data)) return 12;
      if (i == kHeld) raise(SIGSTOP);  // stopped holding frame kHeld
      c->release();
    }
  });
  std::uint64_t sent = 0;
  // Fill the ring while the consumer is stopped (it stops once it holds frame kHeld).
  while (sent <= kHeld) {
    Claim c = producer->claim(kSize, absl::Now() + kGenerous);
    REQUIRE(c.ok());
    FillSeq(sent++, c.data);
    producer->commit();
  }
  AwaitStopped(consumer.pid());
  for (;;) {
    Claim c = producer->try_claim(kSize);
    if (c.result == Result::kWouldBlock) break;
    REQUIRE(c.ok());
    FillSeq(sent++, c.data);
    producer->commit();
  }
  const absl::Time deadline = absl::Now() + kStopped;
  CHECK(producer->claim(kSize, deadline).result == Result::kTimeout);
  CHECK(absl::Now() >= deadline);
  CHECK(SpscConsumer::Attach(name).status().code() == StatusCode::kFailedPrecondition);
  CheckStillAlive(name.str(), 1);

  consumer.Kill(SIGCONT);
  while (sent < kTotal) {
    Claim c = producer->claim(kSize, absl::Now() + kGenerous);
    REQUIRE(c.ok());
    FillSeq(sent++, c.data);
    producer->commit();
  }
  producer->close();
  CHECK(consumer.Wait() == 0);  // it saw 0..kTotal-1 exactly once each, then end-of-stream
}

TEST_CASE("MPMC: a consumer stopped holding a frame is not robbed of it") {
  ScopedName name("fd-mpmc-consumer");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 4;
  options.max_frame = 64;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = MpmcProducer::Attach(name);
  REQUIRE(producer.ok());
  auto send = [&](std::uint64_t seq, absl::Time deadline) {
    Claim c = producer->claim(32, deadline);
    if (!c.ok()) return c.result;
    FillSeq(seq, c.data);
    return producer->commit();
  };
  REQUIRE(send(0, absl::Now() + kGenerous) == Result::kOk);
  Child stopped([&] {
    auto c = MpmcConsumer::Attach(name, EndpointOptions{.wait = WaitMode::kBlock});
    if (!c.ok()) return 10;
    Frame f = c->read(absl::Now() + kGenerous);
    if (!f.ok() || f.sequence != 0 || !IntactSeq(0, f.data)) return 11;
    raise(SIGSTOP);  // stopped holding ticket 0
    // Still ours after the stop.
    if (!IntactSeq(0, f.data)) return 12;
    c->release();
    return 0;
  });
  AwaitStopped(stopped.pid());
  auto other = MpmcConsumer::Attach(name);
  REQUIRE(other.ok());
  for (std::uint64_t i = 1; i < 4; ++i) {
    REQUIRE(send(i, absl::Now() + kGenerous) == Result::kOk);
    Frame f = other->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    other->release();
  }
  // Ticket 4 needs slot 0, which the stopped consumer holds: producers wait, the other consumer
  // finds nothing (the frame is not redelivered while its holder lives).
  absl::Time deadline = absl::Now() + kPeerDeadline;
  CHECK(send(4, deadline) == Result::kTimeout);
  CHECK(absl::Now() >= deadline);
  deadline = absl::Now() + kStopped;
  CHECK(other->read(deadline).result == Result::kTimeout);
  CHECK(absl::Now() >= deadline);
  CHECK(Total(name.str(), &internal::Counters::redelivered) == 0);
  CHECK(Total(name.str(), &internal::Counters::abandoned) == 0);

  stopped.Kill(SIGCONT);
  CHECK(stopped.Wait() == 0);
  REQUIRE(send(4, absl::Now() + kGenerous) == Result::kOk);
  Frame f = other->read(absl::Now() + kGenerous);
  REQUIRE(f.ok());
  CHECK(f.sequence == 4);
  CHECK(IntactSeq(4, f.data));
  other->release();
  CHECK(Total(name.str(), &internal::Counters::redelivered) == 0);
}

// ---- random stops under load ----

constexpr std::size_t kTallySize = 1 << 16;
struct Tally {
  std::atomic<std::uint32_t> seen[kTallySize];
  std::atomic<std::uint32_t> finish;    // set by the parent: children may exit now
  std::atomic<std::uint32_t> attached;  // children that hold their endpoint
};

// AwaitAttached: waits until `count` children hold their endpoints.
void AwaitAttached(const Tally* tally, std::uint32_t count) {
  const absl::Time give_up = absl::Now() + kGenerous;
  while (tally->attached.load() < count && absl::Now() < give_up) usleep(1000);
  REQUIRE(tally->attached.load() == count);
}

template <typename T>
T* MapShared() {
  void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  return new (p) T();
}

// A child that finished its work stays around (idle, still attached) until the parent is done
// stopping processes, so a stop never meets an exited process.
int Linger(const Tally* tally, int code) {
  while (tally->finish.load() == 0) usleep(1000);
  return code;
}

// A blocking call loops over short deadlines, so it meets timeouts while a peer is stopped.
template <typename Call>
auto Retry(Call&& call) {
  for (;;) {
    const absl::Time deadline = absl::Now() + kPeerDeadline;
    auto r = call(deadline);
    if (internal::ResultOf(r) != Result::kTimeout) return r;
    if (absl::Now() < deadline) std::abort();  // an early timeout: the child dies, the test fails
  }
}

// StopRandomly: after a random pause, stops one of `victims` for kStopped, then continues it.
void StopRandomly(std::mt19937_64& rng, Child* const* victims, int count) {
  absl::SleepFor(absl::Microseconds(rng() % 3000));
  Child* victim = victims[rng() % static_cast<std::uint64_t>(count)];
  REQUIRE(kill(victim->pid(), SIGSTOP) == 0);
  AwaitStopped(victim->pid());
  absl::SleepFor(kStopped);
  REQUIRE(kill(victim->pid(), SIGCONT) == 0);
}

TEST_CASE("SPSC: random SIGSTOPs under load: nothing skipped, duplicated or taken over") {
  ScopedName name("fd-spsc-random");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t frames = static_cast<std::uint64_t>(std::max(2000.0, 20000 * Scale()));
  Tally* tally = MapShared<Tally>();
  Child producer([&] {
    auto p = SpscProducer::Attach(name);
    if (!p.ok()) return 10;
    tally->attached.fetch_add(1);
    for (std::uint64_t i = 0; i < frames; ++i) {
      const std::size_t size = 8 + (i * 37) % 300;
      Claim c = Retry([&](absl::Time d) { return p->claim(size, d); });
      if (!c.ok() || c.sequence != i) return 11;
      FillSeq(i, c.data);
      p->commit();
    }
    p->close();
    return Linger(tally, 0);
  });
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 20;
    tally->attached.fetch_add(1);
    // Every frame exactly once, in order, intact: sequence i is the i-th frame read.
    for (std::uint64_t i = 0;; ++i) {
      Frame f = Retry([&](absl::Time d) { return c->read(d); });
      if (f.result == Result::kClosed) return Linger(tally, i == frames ? 0 : 21);
      if (!f.ok() || f.sequence != i || !IntactSeq(i, f.data)) return 22;
      c->release();
    }
  });
  std::mt19937_64 rng(static_cast<std::uint64_t>(absl::ToUnixNanos(absl::Now())));
  AwaitAttached(tally, 2);
  Child* victims[] = {&producer, &consumer};
  for (int k = 0; k < 4; ++k) {
    StopRandomly(rng, victims, 2);
    // The roles stayed where they were.
    CHECK(SpscProducer::Attach(name).status().code() == StatusCode::kFailedPrecondition);
    CHECK(SpscConsumer::Attach(name).status().code() == StatusCode::kFailedPrecondition);
  }
  tally->finish.store(1);
  CHECK(producer.Wait(absl::Seconds(300)) == 0);
  CHECK(consumer.Wait(absl::Seconds(300)) == 0);
  CHECK(Total(name.str(), &internal::Counters::takeovers) == 0);
  munmap(tally, sizeof(Tally));
}

TEST_CASE("MPMC: random SIGSTOPs under load: no slot abandoned, nothing redelivered") {
  ScopedName name("fd-mpmc-random");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 8;
  options.max_frame = 128;
  options.max_endpoints = 8;
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t per_producer = static_cast<std::uint64_t>(std::max(1000.0, 10000 * Scale()));
  REQUIRE(2 * per_producer <= kTallySize);
  Tally* tally = MapShared<Tally>();
  auto producer_body = [&](std::uint64_t id) {
    auto p = MpmcProducer::Attach(name);
    if (!p.ok()) return 10;
    tally->attached.fetch_add(1);
    for (std::uint64_t i = 0; i < per_producer; ++i) {
      Claim c = Retry([&](absl::Time d) { return p->claim(64, d); });
      if (!c.ok()) return 11;
      FillSeq(id * per_producer + i, c.data);
      if (p->commit() != Result::kOk) return 12;  // kAbandoned would be a false death
    }
    return Linger(tally, 0);
  };
  auto consumer_body = [&] {
    auto c = MpmcConsumer::Attach(name);
    if (!c.ok()) return 20;
    tally->attached.fetch_add(1);
    for (;;) {
      Frame f = Retry([&](absl::Time d) { return c->read(d); });
      if (f.result == Result::kClosed) return 0;  // only after the parent's close
      if (!f.ok() || f.data.size() != 64) return 21;
      std::uint64_t id;
      std::memcpy(&id, f.data.data(), sizeof(id));
      if (id >= 2 * per_producer || !IntactSeq(id, f.data)) return 22;
      tally->seen[id].fetch_add(1);
      c->release();
    }
  };
  Child p0([&] { return producer_body(0); });
  Child p1([&] { return producer_body(1); });
  Child c0(consumer_body);
  Child c1(consumer_body);
  std::mt19937_64 rng(static_cast<std::uint64_t>(absl::ToUnixNanos(absl::Now())) + 1);
  AwaitAttached(tally, 4);
  Child* victims[] = {&c0, &c1, &p0, &p1};
  for (int k = 0; k < 6; ++k) StopRandomly(rng, victims, 4);
  tally->finish.store(1);
  CHECK(p0.Wait(absl::Seconds(300)) == 0);
  CHECK(p1.Wait(absl::Seconds(300)) == 0);
  {
    auto closer = MpmcProducer::Attach(name);
    REQUIRE(closer.ok());
    closer->close();
  }
  CHECK(c0.Wait(absl::Seconds(300)) == 0);
  CHECK(c1.Wait(absl::Seconds(300)) == 0);
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < 2 * per_producer; ++i) wrong += tally->seen[i].load() != 1;
  CHECK(wrong == 0);  // every frame exactly once
  CHECK(Total(name.str(), &internal::Counters::abandoned) == 0);
  CHECK(Total(name.str(), &internal::Counters::redelivered) == 0);
  munmap(tally, sizeof(Tally));
}

}  // namespace
}  // namespace shmring
