// broadcast.h — one publisher, many subscribers: every subscriber reads every frame, in order.
//
// clang-format off
//   // Once: create the channel (lossless; a stuck subscriber is evicted after a second).
//   shmring::ChannelOptions options;
//   options.kind = shmring::Kind::kBroadcast;
//   absl::Status created = shmring::CreateChannel("/ticks", options);
//
//   // Each subscriber process: attach, then read every frame published from now on.
//   auto subscriber = shmring::BroadcastSubscriber::Attach("/ticks");
//
//   // The publisher process: write a frame in place.
//   auto publisher = shmring::BroadcastPublisher::Attach("/ticks");
//   shmring::Claim c = publisher->claim(64, absl::Seconds(1));
//   if (c.ok()) {
//     std::memcpy(c.data.data(), bytes, 64);
//     publisher->commit();
//   }
//
//   // Back in a subscriber: read it in place, then check it was not overwritten meanwhile.
//   shmring::Frame f = subscriber->read(absl::Seconds(1));
//   if (f.ok()) {
//     Quote q = parse(f.data);                   // the bytes in the ring
//     if (subscriber->release() == shmring::Result::kOk) use(q, f.sequence);
//   } else if (f.result == shmring::Result::kLapped) {
//     report_gap(f.sequence, subscriber->last_missed());  // exactly the frames skipped
//   }
// clang-format on
// (tests/header_examples_test.cc compiles and runs this example.)
//
// Model: a byte ring with the SPSC frame format, written by one BroadcastPublisher; up to
// ChannelOptions::max_endpoints BroadcastSubscribers, joining and leaving at any time, each with
// its own cursor (in its endpoint entry). A frame stays in the ring until the publisher needs its
// room; what happens when a subscriber has not read it yet is the channel's OverflowPolicy
// (channel.h): kBlock waits for it (a dead subscriber stops counting at once; a live one that
// holds the publisher for ChannelOptions::evict_after is evicted), kOverwrite never waits.
//
// Validation (both policies): a subscriber that fell behind may find a frame overwritten while it
// reads it. A frame is never *delivered* torn: read() checks the frame's header after copying it,
// release() and intact() check that the publisher has not started overwriting the frame since
// read() (seqlock style: the publisher announces the overwrite before it writes), and the copying
// receive() checks after its copy. So: act on bytes read in place only once release() (or
// intact(), called after the last byte was read) returned kOk. In block mode a subscriber that was
// never evicted always gets kOk.
//
// Roles: one publisher at a time (a second Attach fails with FailedPrecondition naming the live
// holder's pid; a dead holder's role is taken over at once and the sequence numbers continue — a
// frame it claimed but did not commit is never delivered). An endpoint belongs to the thread and
// process that attached it: do not share one between threads without a lock, and do not use it in
// a child after fork().
//
// Cost: publisher — try_claim/commit are a handful of loads and stores plus one locked instruction
// per commit (none per subscriber); when the ring's room runs out it rescans the subscribers'
// cursors once, O(subscribers), and keeps the slowest as a cached limit. Subscriber —
// try_read/release are a few loads and stores on its own cursor line plus one locked instruction
// per release under the block policy (one per batch with release_deferred; none under
// overwrite). The publisher makes one FUTEX_WAKE for all sleeping subscribers together, and no
// syscall when none sleeps; a blocked publisher sleeps on the slowest subscriber and only that
// subscriber's release wakes it.
#ifndef SHMRING_BROADCAST_H_
#define SHMRING_BROADCAST_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"  // IWYU pragma: export (absl::Now() for deadlines)
#include "absl/time/time.h"
#include "shmring/channel.h"
#include "shmring/result.h"

namespace shmring {
namespace internal {
struct BroadcastPublisherState;
struct BroadcastSubscriberState;
}  // namespace internal

// StartAt: where a new subscriber starts reading.
enum class StartAt : std::uint8_t {
  kLatest,  // the next frame published after Attach (default)
  kOldest,  // the oldest frame the ring still holds (history replay)
};

// BroadcastPublisher: the writing end of a broadcast channel. Any process may attach it; one at a
// time.
class BroadcastPublisher {
 public:
  // Attach opens the channel `name` and takes the publisher role; it prefaults the ring.
  // Errors: NotFound, InvalidArgument (bad name), PermissionDenied, FailedPrecondition (not a
  // broadcast channel, ABI mismatch, role held by a live process), DataLoss (truncated/corrupted),
  // DeadlineExceeded (creator still initialising after options.open_timeout).
  static absl::StatusOr<BroadcastPublisher> Attach(std::string_view name,
                                                   const EndpointOptions& options = {});

  BroadcastPublisher(BroadcastPublisher&&) noexcept;
  BroadcastPublisher& operator=(BroadcastPublisher&&) noexcept;
  ~BroadcastPublisher();  // publishes deferred frames, detaches; does not close the stream

  // try_claim reserves room for a frame of `size` payload bytes and returns a writable span of
  // exactly `size` bytes inside the ring; Claim::sequence is the number it will carry. kWouldBlock
  // (block policy) if a live subscriber has not released the room yet, kTooLarge if size >
  // max_frame(), kClosed if the channel is closed, kCorrupted if the segment holds impossible
  // cursors or frames. Never kWouldBlock under the overwrite policy. A claim made while one is
  // outstanding replaces it. Cost: O(1); O(subscribers) when the cached limit is exhausted, plus
  // one fcntl per subscriber found at the limit while blocked (to see whether it died).
  [[nodiscard]] Claim try_claim(std::size_t size);
  // claim waits for room until `deadline` (kTimeout then), sleeping on the slowest subscriber
  // (woken by its release) and evicting it once it held the publisher for evict_after.
  [[nodiscard]] Claim claim(std::size_t size, absl::Time deadline);
  [[nodiscard]] Claim claim(std::size_t size, absl::Duration timeout) {
    return claim(size, DeadlineAfter(timeout));
  }
  // commit publishes the claimed frame (all of it, or its first `size` bytes) to every subscriber
  // and wakes those that sleep (one FUTEX_WAKE for all of them). Returns kOk; without an
  // outstanding claim it does nothing.
  Result commit();
  Result commit(std::size_t size);
  // commit_deferred commits the claimed frame without publishing it yet: subscribers see it, with
  // every frame deferred before it, at the next commit() or flush() (one store and one locked
  // instruction for the batch). A claim that needs the room of published frames, close() and the
  // destructor publish first, and so does a commit_deferred that leaves a quarter of the ring
  // deferred. A publisher taking over after a crash does not see unpublished frames.
  void commit_deferred();
  void commit_deferred(std::size_t size);
  // flush publishes every deferred frame and wakes sleeping subscribers; a no-op when nothing is
  // deferred.
  void flush();
  // abort drops the outstanding claim; no sequence number is used.
  void abort();

  // try_send/send: claim + copy + commit.
  [[nodiscard]] Result try_send(std::span<const std::byte> payload);
  [[nodiscard]] Result send(std::span<const std::byte> payload, absl::Time deadline);
  [[nodiscard]] Result send(std::span<const std::byte> payload, absl::Duration timeout) {
    return send(payload, DeadlineAfter(timeout));
  }

  // close marks end-of-stream: each subscriber reads what was committed (and still held), then
  // gets kClosed. Aborts an outstanding claim; later claims return kClosed.
  void close();

  std::size_t max_frame() const;
  std::uint64_t next_sequence() const;  // sequence number of the next committed frame
  std::string_view name() const;
  OverflowPolicy overflow() const;  // the channel's policy
  // counters returns the channel's statistics (publisher = producers, subscribers = consumers):
  // no syscall, a pass over the endpoint table. See ReadChannelCounters (channel.h).
  ChannelCounters counters() const;

 private:
  explicit BroadcastPublisher(std::unique_ptr<internal::BroadcastPublisherState> state);
  std::unique_ptr<internal::BroadcastPublisherState> state_;
};

// BroadcastSubscriber: one reading end of a broadcast channel; every subscriber reads every frame.
class BroadcastSubscriber {
 public:
  // Attach opens the channel `name` and takes a free subscriber entry (or one whose owner died),
  // starting at `start`. Errors as BroadcastPublisher::Attach, and ResourceExhausted when
  // max_endpoints live subscribers are attached.
  static absl::StatusOr<BroadcastSubscriber> Attach(std::string_view name,
                                                    StartAt start = StartAt::kLatest,
                                                    const EndpointOptions& options = {});

  BroadcastSubscriber(BroadcastSubscriber&&) noexcept;
  BroadcastSubscriber& operator=(BroadcastSubscriber&&) noexcept;
  ~BroadcastSubscriber();  // detaches: the publisher stops waiting for it

  // try_read returns the next frame in place (valid until release(), and only while intact()).
  // kWouldBlock if there is none yet; kClosed once the channel is closed and this subscriber
  // read everything still held; kLapped if frames this subscriber had not read were overwritten
  // (Frame::sequence is the first one missed, last_missed() how many; the next read returns the
  // oldest frame still held); kCorrupted if the segment holds an impossible frame or cursor.
  // Calling it again before release() returns the same frame.
  [[nodiscard]] Frame try_read();
  // read waits for a frame until `deadline` (kTimeout then).
  [[nodiscard]] Frame read(absl::Time deadline);
  [[nodiscard]] Frame read(absl::Duration timeout) { return read(DeadlineAfter(timeout)); }
  // release ends the hold on the frame of the last successful read and moves this subscriber's
  // cursor past it (under the block policy that frees its room; the publisher is woken if it
  // sleeps on this subscriber). kOk: the frame was intact the whole time it was held. kLapped: the
  // publisher started overwriting it meanwhile — discard whatever was read from it; it counts
  // as missed, and the next read returns kLapped with the exact count (this frame included).
  // Without a held frame: kOk; it only publishes deferred releases (release_deferred). Cost: one
  // locked instruction (under the block policy; none under overwrite), and a FUTEX_WAKE when the
  // publisher sleeps on this subscriber.
  [[nodiscard]] Result release();
  // release_deferred ends the hold exactly as release() does — the same validation, the same
  // result (kOk: the frame was intact; kLapped: discard it), the next read returns the next frame
  // — but does not publish the cursor to the publisher yet: the next release(), a read that
  // finds no frame (kWouldBlock), a lap, or a release_deferred that leaves a quarter of the ring
  // deferred publishes every deferred release at once (one store and one locked instruction for
  // the batch, as SpscConsumer::release_deferred). Until then, under the block policy, the room
  // stays taken (the publisher may wait for it, and a publisher sleeping on this subscriber is
  // woken by that publication), and shm-inspect shows the published cursor. A subscriber that
  // stops reading with releases deferred holds the publisher back as if it had not released them
  // (evict_after still applies): call release() for the last frame before going idle.
  //
  // clang-format off
  //   for (int i = 0; i < 32; ++i) {
  //     shmring::Frame f = subscriber.read(deadline);
  //     if (!f.ok()) break;
  //     Quote q = parse(f.data);
  //     if (subscriber.release_deferred() == shmring::Result::kOk) use(q);
  //   }
  //   (void)subscriber.release();  // publishes the batch (kOk without a held frame)
  // clang-format on
  //
  // Cost: a few loads and stores on this subscriber's own lines; no locked instruction.
  [[nodiscard]] Result release_deferred();
  // intact: true while the held frame has not been overwritten. Call it after reading the bytes
  // you use (it validates everything read before it); false without a held frame.
  [[nodiscard]] bool intact() const;

  // try_receive/receive: read + copy into `buffer` + validate + release. kTooLarge (frame left
  // unread, Received::size its size) if the buffer is too small. kLapped: Received::sequence is
  // the first frame missed and Received::missed exactly how many (a frame torn during the copy
  // counts among them; the buffer then holds garbage).
  [[nodiscard]] Received try_receive(std::span<std::byte> buffer);
  [[nodiscard]] Received receive(std::span<std::byte> buffer, absl::Time deadline);
  [[nodiscard]] Received receive(std::span<std::byte> buffer, absl::Duration timeout) {
    return receive(buffer, DeadlineAfter(timeout));
  }

  // last_missed: the number of frames the most recent kLapped skipped (0 before any).
  std::uint64_t last_missed() const;
  // missed: frames skipped by every lap since Attach.
  std::uint64_t missed() const;
  std::size_t max_frame() const;
  std::uint64_t next_sequence() const;  // sequence number of the next frame to read
  std::string_view name() const;
  OverflowPolicy overflow() const;
  // counters: as BroadcastPublisher::counters.
  ChannelCounters counters() const;

 private:
  explicit BroadcastSubscriber(std::unique_ptr<internal::BroadcastSubscriberState> state);
  std::unique_ptr<internal::BroadcastSubscriberState> state_;
};

}  // namespace shmring

#endif  // SHMRING_BROADCAST_H_
