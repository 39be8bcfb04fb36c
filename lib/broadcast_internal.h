// broadcast_internal.h — the state of a broadcast publisher and subscriber (lib/broadcast.cc has
// the algorithm and its ordering protocol).
#ifndef SHMRING_LIB_BROADCAST_INTERNAL_H_
#define SHMRING_LIB_BROADCAST_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "endpoint.h"
#include "layout.h"
#include "shmring/broadcast.h"

namespace shmring::internal {

// The publisher advances the oldest frame by at least this fraction of the ring at a time (when
// the frames are there), so the tail-intent store and the subscriber-epoch check happen once per
// batch, not per frame.
inline constexpr std::uint64_t kTailBatchDivisor = 8;
// Deferred publication publishes anyway once this fraction of the ring is deferred (as SPSC).
inline constexpr std::uint64_t kBroadcastDeferredDivisor = 4;
// A blocked publisher re-checks whether its slowest subscriber died at most this often (an fcntl
// each), and sleeps at most this long at a time while blocked: a death wakes nobody.
inline constexpr std::uint64_t kLivenessCheckNs = 200'000;
inline constexpr absl::Duration kBlockedRecheck = absl::Milliseconds(2);
// Lap resynchronisation gives up after this many attempts in one call (the publisher kept
// overwriting the frame it tried to resume at) and returns kWouldBlock; the next call retries.
inline constexpr int kLapAttempts = 64;

struct BroadcastView {
  ControlBlock* control;
  std::byte* data;
  std::uint64_t capacity;
  std::uint64_t mask;
  std::uint32_t max_frame;
  std::uint32_t entries;  // endpoint table size (publisher + subscribers)
  bool overwrite;
  std::uint64_t evict_after_ns;
  explicit BroadcastView(const Endpoint& ep)
      : control(ep.control()),
        data(ep.segment().data()),
        capacity(ep.segment().geometry().capacity),
        mask(ep.segment().geometry().capacity - 1),
        max_frame(ep.segment().geometry().max_frame),
        entries(ep.segment().geometry().max_endpoints),
        overwrite(ep.segment().geometry().overflow == kOverflowOverwrite),
        evict_after_ns(ep.segment().geometry().evict_after_ns) {}
};

struct BroadcastPublisherState {
  std::unique_ptr<Endpoint> endpoint;
  BroadcastView ring;
  std::uint64_t write_position;      // end of the last committed frame (published or deferred)
  std::uint64_t published_position;  // == control.write_position
  std::uint64_t next_sequence;
  std::uint64_t tail;      // == control.oldest_position: the oldest frame still held
  std::uint64_t tail_seq;  // its sequence number
  bool corrupted = false;  // the cursors found at attach are impossible
  // Outstanding claim.
  bool claimed = false;
  std::uint64_t claim_position = 0;
  std::uint64_t claim_size = 0;
  // Block policy: the cached limit — the slowest counted cursor at the last scan; the tail may
  // advance up to it without a rescan.
  std::uint64_t limit;
  std::uint32_t limiter = 0;           // its entry (0: no subscriber limits)
  std::uint64_t scan_epoch = 0;        // control.subscriber_epoch when the scan began
  std::uint32_t waits_for = 0;         // == control.publisher_waits_for
  std::uint64_t blocked_since_ns = 0;  // first failed claim of the current block (0: not blocked)
  std::uint64_t liveness_checked_ns = 0;
  // Per entry: a generation known dead, and a stuck subscriber evicted at this cursor (skipped by
  // the scan while its generation and cursor are unchanged).
  std::vector<std::uint64_t> dead_generation;
  std::vector<std::uint64_t> evicted_generation;
  std::vector<std::uint64_t> evicted_cursor;

  explicit BroadcastPublisherState(std::unique_ptr<Endpoint> ep);
  ~BroadcastPublisherState();
  // TryClaim and TryRead are always inlined into their callers (all in lib/broadcast.cc):
  // returned through memory, the result was reloaded 16 bytes at a time over narrower stores, a
  // store-forwarding stall (about half of TryRead's samples, most of TryClaim's; as in
  // lib/spsc.cc, and before SLP vectorisation was turned off in lib/meson.build).
  [[gnu::always_inline]] inline Claim TryClaim(std::size_t size);
  // TryClaimFast: TryClaim's common case (room below the tail, no wrap, not blocked, open) with
  // no call, so claim() saves no callee-saved registers; anything else returns kWouldBlock with
  // nothing changed, and the caller runs TryClaim (lib/spsc.cc's TryClaimFast says why).
  [[gnu::always_inline]] inline Claim TryClaimFast(std::size_t size);
  void Commit(std::size_t size, bool publish);
  void Publish();
  void Close();

 private:
  Result MakeRoom(std::uint64_t target);
  Result Refill(std::uint64_t target);
  void Scan();
  void StoreTail(std::uint64_t position, std::uint64_t sequence);
  void Unblocked();
};

struct BroadcastSubscriberState {
  std::unique_ptr<Endpoint> endpoint;
  BroadcastView ring;
  std::uint64_t cursor;  // position of the next frame to read (local; see published_cursor)
  // == entry.cursor_position: what the publisher counts. Behind `cursor` by the frames released
  // with release_deferred() since the last publication (PublishCursor).
  std::uint64_t published_cursor = kNoTicket;
  std::uint64_t expected;      // its sequence number, once `synced`
  bool synced = false;         // expected is known (the first frame read fixes it)
  std::uint64_t cached_write;  // write_position as last loaded
  bool holding = false;        // a frame handed out by read, until release
  // The held frame field by field, as SpscConsumerState keeps it (assigning a whole Frame stalls
  // on store forwarding); Held() rebuilds it for a read that finds the frame still held. The read
  // that takes a frame returns it from its locals: reloading fields it just stored stalls too.
  std::span<const std::byte> held_data;
  std::uint64_t held_sequence = 0;
  Frame Held() const { return {Result::kOk, false, held_data, held_sequence}; }
  std::uint64_t held_end = 0;
  bool lap_pending = false;  // the held frame was overwritten; the next read reports the lap
  std::uint64_t last_missed = 0;
  std::uint64_t missed_total = 0;

  BroadcastSubscriberState(std::unique_ptr<Endpoint> ep, StartAt start);
  ~BroadcastSubscriberState();
  [[gnu::always_inline]] inline Frame TryRead();  // see TryClaim
  // TryReadFast: TryRead's common case (a flagless frame below the cached write position, no lap
  // pending, in sequence), with no call; anything else returns kWouldBlock with nothing changed,
  // and the caller runs TryRead, which decides.
  [[gnu::always_inline]] inline Frame TryReadFast();
  // Release ends the hold on the read frame; `publish` false defers publishing the cursor
  // (release_deferred).
  Result Release(bool publish = true);
  bool Intact() const;
  Received Receive(const Frame& first, std::span<std::byte> buffer);

 private:
  bool Lap(Frame* out);
  Frame ReportLap(std::uint64_t missed, std::uint64_t first);
  bool Reposition();
  void PublishCursor();
  // PublishDeferred publishes the cursor if deferred releases moved it; nothing otherwise.
  void PublishDeferred() {
    if (published_cursor != cursor) PublishCursor();
  }
};

}  // namespace shmring::internal

#endif  // SHMRING_LIB_BROADCAST_INTERNAL_H_
