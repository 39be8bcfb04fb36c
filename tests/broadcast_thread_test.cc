// Broadcast with threads (also built for ThreadSanitizer): one publisher thread, subscriber
// threads joining at the start and in the middle, the block policy (lossless; no eviction), with
// batched publication and copying and in-place reads, released one by one and in batches. (The
// overwrite policy is left out here: its readers copy bytes the publisher may be overwriting and
// discard the copy when the seqlock check fails — a race by design that TSan would rightly report;
// the process tests cover it.)
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "shmring/broadcast.h"
#include "shmring/channel.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::FillSeq;
using testing::IntactSeq;
using testing::Scaled;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(120);

TEST_CASE("threads: every subscriber gets every frame from where it joined") {
  ScopedName name("threads");
  ChannelOptions options;
  options.kind = Kind::kBroadcast;
  options.capacity = 1 << 14;
  options.evict_after = absl::InfiniteDuration();
  REQUIRE(CreateChannel(name, options).ok());
  const std::uint64_t frames = Scaled(100'000);
  constexpr int kSubscribers = 3;  // kCopy, kRelease, kBatched; the late joiner kDeferredOnly
  std::atomic<int> attached{0};
  std::atomic<int> failures{0};
  // How a subscriber reads: copying receive; read in place + release(); read in place +
  // release_deferred() with a publishing release() every 16 frames; release_deferred() only (its
  // releases are published by the reads that find no frame and every quarter of the ring).
  enum Mode { kCopy, kRelease, kBatched, kDeferredOnly };
  auto subscribe = [&](Mode mode) {
    auto sub = BroadcastSubscriber::Attach(name);
    if (!sub.ok()) {
      failures.fetch_add(1);
      return;
    }
    attached.fetch_add(1);
    std::vector<std::byte> buffer(sub->max_frame());
    std::uint64_t expected = sub->next_sequence();
    for (;;) {
      if (mode == kCopy) {
        Received r = sub->receive(buffer, kGenerous);
        if (r.result == Result::kClosed) break;
        if (!r.ok() || r.sequence != expected ||
            !IntactSeq(expected, std::span(buffer).first(r.size))) {
          failures.fetch_add(1);
          return;
        }
      } else {
        Frame f = sub->read(kGenerous);
        if (f.result == Result::kClosed) break;
        if (!f.ok() || f.sequence != expected || !IntactSeq(expected, f.data)) {
          failures.fetch_add(1);
          return;
        }
        const bool publish = mode == kRelease || (mode == kBatched && expected % 16 == 15);
        if ((publish ? sub->release() : sub->release_deferred()) != Result::kOk) {
          failures.fetch_add(1);
          return;
        }
      }
      ++expected;
    }
    if (expected != frames || sub->missed() != 0) failures.fetch_add(1);
  };
  std::vector<std::thread> threads;
  for (int s = 0; s < kSubscribers; ++s) threads.emplace_back(subscribe, static_cast<Mode>(s));
  while (attached.load() + failures.load() < kSubscribers) std::this_thread::yield();
  auto pub = BroadcastPublisher::Attach(name);
  REQUIRE(pub.ok());
  for (std::uint64_t i = 0; i < frames; ++i) {
    if (i == frames / 2) threads.emplace_back(subscribe, kDeferredOnly);  // a late joiner
    const std::size_t size = 8 + i % 120;
    Claim c = pub->claim(size, kGenerous);
    REQUIRE(c.ok());
    FillSeq(i, c.data);
    if (i % 8 == 7) {
      pub->commit();
    } else {
      pub->commit_deferred();
    }
  }
  pub->close();
  for (auto& t : threads) t.join();
  CHECK(failures.load() == 0);
}

}  // namespace
}  // namespace shmring
