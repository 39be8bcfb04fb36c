// broadcast.cc — one publisher, many subscribers over a byte ring with the SPSC frame format.
//
// Ordering protocol
// -----------------
// Positions are byte counts that only grow (offset = position & mask). Shared fields (layout.h):
//   control.write_position   publisher, release store in Publish() [B1]; subscribers acquire [S1].
//   control.next_write_seq   publisher, relaxed before [B1] (for a successor and shm-inspect).
//   control.oldest_position  the tail intent: publisher, stored in StoreTail() [B3] *before* it
//                            writes any byte below the new value + capacity, followed by a fence
//                            (release; seq_cst under the block policy, see [B4]). Subscribers load
//                            it after copying a frame header or payload, behind an acquire fence
//                            [S3] (seqlock style): if it is still <= the frame's position, nothing
//                            of the frame was overwritten before the copy — the publisher only
//                            writes positions below oldest_position + capacity, and a frame lies
//                            in [position, next) with next <= oldest_position + capacity.
//   entry.cursor_position    subscriber, seq_cst store [S2] in PublishCursor(): at release(), and
//                            for release_deferred() once per batch (the next release(), a read
//                            that finds no frame, a quarter of the ring deferred), and when placed
//                            anew; publisher seq_cst loads in Scan() [B2] (its cached limit). The
//                            subscriber's local cursor may run ahead of it (deferred releases):
//                            the publisher only ever counts the published one, which is <= it.
//   control.publisher_waits_for  publisher, seq_cst store before it re-checks and sleeps [B5];
//                            a subscriber loads it (seq_cst) after [S2] and, if it names its
//                            entry, wakes the publisher (Dekker: one of the two sees the other).
//   control.subscriber_epoch  subscriber, seq_cst fetch_add after placing its cursor anew [S5],
//                            then a seq_cst reload of oldest_position; the publisher loads the
//                            epoch (seq_cst) after [B3] [B4] and rescans if it changed. Either the
//                            publisher sees the new cursor, or the subscriber sees the new tail
//                            and places itself again: a newly placed cursor is never passed
//                            unseen. (If the rescan shows the tail went too far, the publisher
//                            lowers it again before writing anything: oldest_position only ever
//                            drops back to a value no byte written since exceeds.)
//   control.closed           PublishClose (release at least) [B6]; subscribers acquire [S4], then
//                            reload write_position: frames committed before close() are drained.
// Frames: the publisher writes a frame before [B1]; a subscriber reads it after [S1]; under the
// block policy the publisher overwrites it only after [B2] saw every counted cursor past it.
// Wake-ups: subscribers share data_ready: one Notify (one FUTEX_WAKE for all) per publication,
// nothing when nobody sleeps. A blocked publisher sleeps on space_ready; only the subscriber named
// by publisher_waits_for notifies it.
//
// Every byte loaded from the segment is hostile: positions are bounded against the capacity and
// each other, frames are decoded by DecodeFrameAt (spsc_frame.h), kCorrupted otherwise.
#include "shmring/broadcast.h"

#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "broadcast_internal.h"
#include "spsc_frame.h"

namespace shmring {
namespace internal {

namespace {
// Fence: std::atomic_thread_fence, except under ThreadSanitizer, which does not model fences (GCC
// refuses them: -Wtsan). There the fences keep only their compiler barrier: the thread test runs
// the block policy, where every frame a subscriber reads is ordered by the acquire/seq_cst pairs
// above without them, and x86 keeps loads, and stores, in program order by itself.
inline void Fence(std::memory_order order) {
#if SHMRING_TSAN
  std::atomic_signal_fence(order);
#else
  std::atomic_thread_fence(order);
#endif
}

// An entry's role. Acquire: pairs with the release store of `role` at attach, so the generation
// and the kNoTicket cursor written before it are seen.
Role RoleOf(const EndpointEntry* e) {
  return static_cast<Role>(e->role.load(std::memory_order_acquire));
}
}  // namespace

// ---- publisher ----

BroadcastPublisherState::BroadcastPublisherState(std::unique_ptr<Endpoint> ep)
    : endpoint(std::move(ep)),
      ring(*endpoint),
      // Acquire: pairs with a previous (dead) publisher's [B1]: its frames are visible.
      write_position(ring.control->write_position.load(std::memory_order_acquire)),
      published_position(write_position),
      next_sequence(ring.control->next_write_seq.load(std::memory_order_relaxed)),
      tail(ring.control->oldest_position.load(std::memory_order_relaxed)),
      tail_seq(ring.control->oldest_seq.load(std::memory_order_relaxed)),
      limit(tail),
      dead_generation(ring.entries, kNoTicket),
      evicted_generation(ring.entries, kNoTicket),
      evicted_cursor(ring.entries, kNoTicket) {
  corrupted = tail > write_position || write_position - tail > ring.capacity;
  // A predecessor's waiting flag is stale. Relaxed: subscribers only compare it to their index.
  ring.control->publisher_waits_for.store(0, std::memory_order_relaxed);
  // A predecessor may have died between [B1] and [B7]. Release: as [B7].
  ring.control->published_seq.store(next_sequence, std::memory_order_release);
  // Read-only touches plus MADV_POPULATE_WRITE: subscribers may be reading any page.
  PrefaultDataArea(ring.data, ring.capacity, /*for_writing=*/true);
}

BroadcastPublisherState::~BroadcastPublisherState() {
  if (!endpoint) return;
  Publish();  // committed frames are never lost
  ring.control->publisher_waits_for.store(0, std::memory_order_relaxed);
}

void BroadcastPublisherState::Publish() {
  if (published_position == write_position) return;
  published_position = write_position;
  endpoint->FlushFrameCounts();
  // Relaxed: ordered before [B1].
  ring.control->next_write_seq.store(next_sequence, std::memory_order_relaxed);
  // [B1] release: the frames up to write_position are complete. Pairs with [S1].
  ring.control->write_position.store(write_position, std::memory_order_release);
  // [B7] release, after [B1]: a joiner that reads this value sees write_position at least as new
  // (see Snapshot).
  ring.control->published_seq.store(next_sequence, std::memory_order_release);
  endpoint->Notify(ring.control->data_ready, INT_MAX);
}

void BroadcastPublisherState::Close() {
  claimed = false;
  Publish();
  PublishClose(*ring.control);  // [B6]
}

void BroadcastPublisherState::StoreTail(std::uint64_t position, std::uint64_t sequence) {
  // Relaxed: informational (shm-inspect); subscribers read the frame header instead.
  ring.control->oldest_seq.store(sequence, std::memory_order_relaxed);
  if (ring.overwrite) {
    // [B3] the tail intent, then a release fence: the stores that overwrite the old frames come
    // after it, so a subscriber whose copy saw any of them sees this value after its acquire
    // fence [S3].
    ring.control->oldest_position.store(position, std::memory_order_relaxed);
    Fence(std::memory_order_release);
  } else {
    // [B3] as above; seq_cst and a seq_cst fence, because [B4] (a load) must not pass it.
    ring.control->oldest_position.store(position, std::memory_order_seq_cst);
    Fence(std::memory_order_seq_cst);
  }
}

void BroadcastPublisherState::Scan() {
  // [B4'] seq_cst: a subscriber that bumped the epoch before this load stored its cursor before
  // (see [S5]); the loads below see it.
  scan_epoch = ring.control->subscriber_epoch.load(std::memory_order_seq_cst);
  std::uint64_t slowest = write_position;
  std::uint32_t slowest_index = 0;
  for (std::uint32_t i = 1; i < ring.entries; ++i) {
    const EndpointEntry* e = endpoint->segment().endpoint(i);
    if (RoleOf(e) != Role::kConsumer) continue;
    // Relaxed: a new owner bumps it before its release store of `role` (read above).
    const std::uint64_t generation = e->generation.load(std::memory_order_relaxed);
    if (dead_generation[i] == generation) continue;
    // [B2] seq_cst: pairs with [S2].
    const std::uint64_t c = e->cursor_position.load(std::memory_order_seq_cst);
    if (evicted_generation[i] == generation && evicted_cursor[i] == c) continue;
    // Behind the tail: already lapped, it places itself anew. Beyond our position: no cursor yet
    // (kNoTicket) or hostile.
    if (c < tail || c > write_position) continue;
    if (c < slowest) {
      slowest = c;
      slowest_index = i;
    }
  }
  limit = slowest;
  limiter = slowest_index;
}

void BroadcastPublisherState::Unblocked() {
  blocked_since_ns = 0;
  endpoint->ClearRecheck();
  if (waits_for != 0) {
    waits_for = 0;
    // Relaxed: a subscriber reading a stale value makes one Notify that finds nobody waiting.
    ring.control->publisher_waits_for.store(0, std::memory_order_relaxed);
  }
}

// Refill makes the cached limit reach `target` (block policy): rescans, drops dead subscribers,
// evicts one that held the publisher for evict_after, or announces whom it waits for.
Result BroadcastPublisherState::Refill(std::uint64_t target) {
  for (;;) {
    Scan();
    if (limit >= target) {
      Unblocked();
      return Result::kOk;
    }
    const EndpointEntry* e = endpoint->segment().endpoint(limiter);
    const std::uint64_t generation = e->generation.load(std::memory_order_relaxed);
    const std::uint64_t now = NowRealtimeNs();
    if (now - liveness_checked_ns >= kLivenessCheckNs || liveness_checked_ns > now) {
      liveness_checked_ns = now;
      if (!endpoint->segment().EndpointAlive(limiter)) {
        dead_generation[limiter] = generation;  // dropped at once: its lock is gone
        liveness_checked_ns = 0;                // the next limiter may be dead too
        continue;
      }
    }
    if (blocked_since_ns == 0 || blocked_since_ns > now) blocked_since_ns = now;
    if (ring.evict_after_ns != kNeverEvict && now - blocked_since_ns >= ring.evict_after_ns) {
      // Alive but stuck for the whole bound: detach it from the limit. (The block keeps its start
      // time: another subscriber stuck at the same cursor held us as long.)
      evicted_generation[limiter] = generation;
      evicted_cursor[limiter] = limit;
      endpoint->Count(&Counters::evicted);
      continue;
    }
    if (waits_for != limiter) {
      waits_for = limiter;
      // [B5] seq_cst: then rescan ([B2]); pairs with the subscriber's [S2] + load of this word.
      ring.control->publisher_waits_for.store(limiter, std::memory_order_seq_cst);
      continue;
    }
    absl::Duration sleep = kBlockedRecheck;
    if (ring.evict_after_ns != kNeverEvict) {
      const std::uint64_t left = ring.evict_after_ns - (now - blocked_since_ns);
      sleep = std::min(sleep,
                       absl::Nanoseconds(static_cast<std::int64_t>(left)) + absl::Microseconds(50));
    }
    endpoint->RecheckWithin(sleep);
    return Result::kWouldBlock;
  }
}

// MakeRoom moves the tail to at least `target` (the publisher will write below target +
// capacity), by at least a batch when the frames are there.
Result BroadcastPublisherState::MakeRoom(std::uint64_t target) {
  // Subscribers must see the frames the tail passes (and a blocked one can only release what it
  // sees).
  if (target > published_position) Publish();
  for (;;) {
    std::uint64_t want =
        std::max(target, std::min(tail + ring.capacity / kTailBatchDivisor, published_position));
    if (!ring.overwrite) {
      if (limit < target) {
        if (const Result r = Refill(target); r != Result::kOk) return r;
      }
      want = std::min(want, limit);
    }
    std::uint64_t t = tail;
    std::uint64_t s = tail_seq;
    while (t < want) {
      const DecodedFrame f =
          DecodeFrameAt(ring.data, ring.capacity, ring.max_frame, t, write_position);
      if (f.kind == DecodedFrame::Kind::kCorrupted) return Result::kCorrupted;
      // A padding frame carries the sequence number of the frame after it.
      s = f.kind == DecodedFrame::Kind::kPadding ? f.sequence : f.sequence + 1;
      t = f.next_position;
    }
    if (t >= write_position) s = next_sequence;
    StoreTail(t, s);
    if (!ring.overwrite) {
      // [B4] seq_cst, after [B3]: a subscriber that placed its cursor since the scan is seen now.
      if (ring.control->subscriber_epoch.load(std::memory_order_seq_cst) != scan_epoch) {
        Scan();
        if (limit < t) {
          StoreTail(tail, tail_seq);  // nothing was written yet: back to the old tail
          continue;
        }
      }
    }
    tail = t;
    tail_seq = s;
    return Result::kOk;
  }
}

Claim BroadcastPublisherState::TryClaimFast(std::size_t size) {
  // Relaxed: as in TryClaim.
  if (ring.control->closed.load(std::memory_order_relaxed) != 0 || corrupted ||
      size > ring.max_frame || blocked_since_ns != 0) {
    return {Result::kWouldBlock, {}, 0};
  }
  const std::uint64_t frame = FrameBytes(size);
  const std::uint64_t offset = write_position & ring.mask;
  if (frame > ring.capacity - offset || write_position + frame > tail + ring.capacity) {
    return {Result::kWouldBlock, {}, 0};
  }
  claimed = true;  // replaces an outstanding claim, as TryClaim does
  claim_position = write_position;
  claim_size = size;
  std::byte* payload = ring.data + offset + sizeof(FrameHeader);
  return {Result::kOk, std::span<std::byte>(payload, size), next_sequence};
}

Claim BroadcastPublisherState::TryClaim(std::size_t size) {
  // Relaxed is enough to see a close eventually; subscribers order it via [B6]/[S4].
  if (ring.control->closed.load(std::memory_order_relaxed) != 0) return {Result::kClosed, {}, 0};
  if (corrupted) return {Result::kCorrupted, {}, 0};
  if (size > ring.max_frame) return {Result::kTooLarge, {}, 0};
  claimed = false;
  const std::uint64_t frame = FrameBytes(size);
  const std::uint64_t offset = write_position & ring.mask;
  const std::uint64_t to_end = ring.capacity - offset;
  const std::uint64_t need = frame <= to_end ? frame : to_end + frame;
  if (write_position + need > tail + ring.capacity) {
    const Result r = MakeRoom(write_position + need - ring.capacity);
    if (r != Result::kOk) return {r, {}, 0};
  } else if (blocked_since_ns != 0) {
    Unblocked();
  }
  std::uint64_t position = write_position;
  if (frame > to_end) {
    const FrameHeader pad{static_cast<std::uint32_t>(to_end - sizeof(FrameHeader)),
                          kFrameFlagPadding,
                          ReadyWordFor(next_sequence, write_position, ring.capacity)};
    std::memcpy(ring.data + offset, &pad, sizeof(pad));
    position += to_end;
  }
  claimed = true;
  claim_position = position;
  claim_size = size;
  std::byte* payload = ring.data + (position & ring.mask) + sizeof(FrameHeader);
  return {Result::kOk, std::span<std::byte>(payload, size), next_sequence};
}

void BroadcastPublisherState::Commit(std::size_t size, bool publish) {
  if (!claimed) return;
  if (size > claim_size) size = claim_size;
  claimed = false;
  // The SPSC frame format, ready word included (subscribers learn of frames from write_position;
  // the lap bit keeps the bytes identical to an SPSC ring's for shm-inspect and the decoder).
  const FrameHeader header{static_cast<std::uint32_t>(size), 0,
                           ReadyWordFor(next_sequence, claim_position, ring.capacity)};
  std::memcpy(ring.data + (claim_position & ring.mask), &header, sizeof(header));
  write_position = claim_position + FrameBytes(size);
  ++next_sequence;
  endpoint->CountFrameLater(size);  // stored by Publish()
  if (publish || write_position - published_position >= ring.capacity / kBroadcastDeferredDivisor) {
    Publish();
  }
}

// ---- subscriber ----

BroadcastSubscriberState::BroadcastSubscriberState(std::unique_ptr<Endpoint> ep, StartAt start)
    : endpoint(std::move(ep)), ring(*endpoint) {
  PrefaultDataArea(ring.data, ring.capacity, /*for_writing=*/false);
  if (start == StartAt::kOldest) {
    // The sequence number comes from the first frame read (a lap before it is silent: the
    // subscriber then starts at the oldest frame still held, as asked).
    // Acquire: orders the frame-header reads after it (they are validated by [S3] anyway).
    cursor = ring.control->oldest_position.load(std::memory_order_acquire);
    // A hint for next_sequence() until then. Relaxed: informational.
    expected = ring.control->oldest_seq.load(std::memory_order_relaxed);
    cached_write = cursor;
    Reposition();
    return;
  }
  // Latest: take (write_position, its sequence number) consistently and place the cursor there;
  // again if the publisher passed it before it could see it.
  for (int attempt = 0;; ++attempt) {
    std::uint64_t seq_after = 0, write = 0, seq_before = 0;
    for (int i = 0; i < 1000; ++i) {
      // [S6] acquire: pairs with [B7]: write_position loaded next is at least the one stored
      // before it. Then [S1]: next_write_seq stored before it is seen. Equal sequence numbers
      // then belong to this write_position. (A publisher that died between [B1] and [B7] leaves
      // them unequal until a successor attaches: after 1000 tries the later one is taken.)
      seq_after = ring.control->published_seq.load(std::memory_order_acquire);
      write = ring.control->write_position.load(std::memory_order_acquire);
      seq_before = ring.control->next_write_seq.load(std::memory_order_relaxed);
      if (seq_after == seq_before) break;
      CpuRelax();
    }
    cursor = write;
    cached_write = write;
    expected = seq_before;
    synced = true;
    if (Reposition() || attempt == kLapAttempts) return;
  }
}

BroadcastSubscriberState::~BroadcastSubscriberState() {
  if (!endpoint) return;
  endpoint->FlushFrameCounts();  // releases counted since the last publication of the cursor
  // The publisher may sleep on us: withdraw the cursor and wake it (the entry becomes free when
  // the endpoint detaches; a free entry does not count). seq_cst: as in PublishCursor.
  if (ring.control->publisher_waits_for.load(std::memory_order_seq_cst) == endpoint->index()) {
    endpoint->entry()->cursor_position.store(kNoTicket, std::memory_order_seq_cst);
    endpoint->Notify(ring.control->space_ready, 1);
  }
}

void BroadcastSubscriberState::PublishCursor() {
  published_cursor = cursor;
  endpoint->FlushFrameCounts();
  // Relaxed: informational (shm-inspect), ordered before [S2].
  endpoint->entry()->cursor_seq.store(expected, std::memory_order_relaxed);
  if (ring.overwrite) {
    // Nobody waits for a cursor: release is enough for shm-inspect.
    endpoint->entry()->cursor_position.store(cursor, std::memory_order_release);
    return;
  }
  // [S2] seq_cst: pairs with [B2]; then the load below pairs with [B5] (Dekker). In the single
  // total order of seq_cst operations either [S2] comes before the publisher's rescan [B2] after
  // [B5] — the rescan sees this cursor and the publisher does not sleep on it — or [B5] comes
  // before the load below, which then names this entry and we wake the publisher. [S2] is the
  // one locked instruction of a publication (an xchg on x86) and it cannot be a plain store
  // checked by a plain load of publisher_waits_for first: the load could pass the store (the
  // store buffer), both sides would read the old values, and the publisher would sleep on free
  // room until its next recheck. The wake itself (Notify's exchange, FUTEX_WAKE) happens only
  // when the load names us; release_deferred() pays [S2] once per batch instead of per frame.
  endpoint->entry()->cursor_position.store(cursor, std::memory_order_seq_cst);
  if (ring.control->publisher_waits_for.load(std::memory_order_seq_cst) == endpoint->index()) {
    endpoint->Notify(ring.control->space_ready, 1);
  }
}

// Reposition publishes a cursor placed anew (attach, lap) and checks that the publisher has not
// passed it meanwhile. True if it stands; false if the tail is beyond it now.
bool BroadcastSubscriberState::Reposition() {
  PublishCursor();
  // [S5] seq_cst, after [S2]; then the seq_cst reload of the tail (pairs with [B3]/[B4]).
  ring.control->subscriber_epoch.fetch_add(1, std::memory_order_seq_cst);
  return ring.control->oldest_position.load(std::memory_order_seq_cst) <= cursor;
}

// ReportLap records `missed` frames, the first of them `first`, and returns the kLapped frame.
Frame BroadcastSubscriberState::ReportLap(std::uint64_t missed, std::uint64_t first) {
  last_missed = missed;
  missed_total += missed;
  endpoint->Count(&Counters::missed, missed);
  endpoint->Count(&Counters::lapped);
  return {Result::kLapped, false, {}, first};
}

// Lap handles a cursor the tail passed: resumes at the oldest frame still held and reports how
// many frames were skipped. True with *out set when the caller should return *out; false when
// reading may go on (nothing was missed: the subscriber had read nothing yet, or the tail only
// passed a padding frame). Longer than most functions here on purpose: it is one bounded retry
// loop over the tail (a seqlock read), and its exits and the ordering labels [S3]-[S5] read in
// execution order only when kept together.
bool BroadcastSubscriberState::Lap(Frame* out) {
  const std::uint64_t first = expected;
  const bool was_synced = synced;
  ControlBlock* control = ring.control;
  for (int attempt = 0; attempt < kLapAttempts; ++attempt) {
    const std::uint64_t oldest = control->oldest_position.load(std::memory_order_seq_cst);
    // Acquire: pairs with [B1]; loaded after the tail, so it is not below it for a correct peer.
    const std::uint64_t write = control->write_position.load(std::memory_order_acquire);
    if (oldest > write || write - oldest > ring.capacity) {
      *out = {Result::kCorrupted, false, {}, 0};
      return true;
    }
    if (oldest <= cursor) {
      if (write - cursor > ring.capacity) {  // no correct publisher gets a ring ahead of its tail
        *out = {Result::kCorrupted, false, {}, 0};
        return true;
      }
      if (!lap_pending) return false;  // the tail came back: the publisher wrote nothing there
      // The held frame was reported overwritten (release() said kLapped): skip it.
      lap_pending = false;
      cursor = held_end;
      expected = held_sequence + 1;
      PublishCursor();
      *out = ReportLap(1, first);
      return true;
    }
    std::uint64_t resume_seq;
    if (oldest == write) {
      // Every frame was overwritten and the next one is not published yet.
      // [S4] acquire: pairs with [B6]; then next_write_seq is final.
      if (control->closed.load(std::memory_order_acquire) == 0 ||
          control->write_position.load(std::memory_order_acquire) != write) {
        lap_pending = true;
        *out = {Result::kWouldBlock, false, {}, 0};
        return true;
      }
      resume_seq = control->next_write_seq.load(std::memory_order_relaxed);
    } else {
      const DecodedFrame f = DecodeFrameAt(ring.data, ring.capacity, ring.max_frame, oldest, write);
      // [S3] acquire fence, then the tail again: the header copy above is intact if unchanged.
      Fence(std::memory_order_acquire);
      if (control->oldest_position.load(std::memory_order_relaxed) != oldest) continue;
      if (f.kind == DecodedFrame::Kind::kCorrupted) {
        *out = {Result::kCorrupted, false, {}, 0};
        return true;
      }
      resume_seq = f.sequence;
    }
    if (was_synced && resume_seq < first) {
      *out = {Result::kCorrupted, false, {}, 0};
      return true;
    }
    cursor = oldest;
    cached_write = write;
    expected = resume_seq;
    synced = true;
    if (!Reposition()) continue;  // passed again before the publisher could see us
    lap_pending = false;
    const std::uint64_t missed = was_synced ? resume_seq - first : 0;
    if (missed == 0) return false;
    *out = ReportLap(missed, first);
    return true;
  }
  lap_pending = true;
  *out = {Result::kWouldBlock, false, {}, 0};
  return true;
}

Frame BroadcastSubscriberState::TryReadFast() {
  if (holding) return Held();
  const std::uint64_t position = cursor;
  const std::uint64_t available = cached_write - position;
  const std::uint64_t offset = position & ring.mask;
  if (lap_pending || !synced || available < sizeof(FrameHeader) || available > ring.capacity ||
      offset % kFrameAlign != 0) {
    return {Result::kWouldBlock, false, {}, 0};
  }
  // A subset of what TryRead accepts through DecodeFrameAt (spsc_frame.h): the header is copied
  // once, then [S3] as in TryRead says whether the copy is intact.
  FrameHeader header;
  std::memcpy(&header, ring.data + offset, sizeof(header));
  Fence(std::memory_order_acquire);
  if (ring.control->oldest_position.load(std::memory_order_relaxed) > position) {
    return {Result::kWouldBlock, false, {}, 0};  // a lap: TryRead reports it
  }
  const std::uint64_t bytes = FrameBytes(header.length);
  const std::uint64_t sequence = header.sequence & ~kFrameLapBit;
  if (header.flags != 0 || header.length > ring.max_frame || bytes > ring.capacity - offset ||
      bytes > available || sequence < expected) {
    return {Result::kWouldBlock, false, {}, 0};
  }
  expected = sequence;
  const std::span<const std::byte> data(ring.data + offset + sizeof(FrameHeader), header.length);
  held_data = data;
  held_sequence = sequence;
  held_end = position + bytes;
  holding = true;
  // From the locals, not Held(): a reload of held_data just stored stalled (see spsc.cc).
  return {Result::kOk, false, data, sequence};
}

Frame BroadcastSubscriberState::TryRead() {
  if (holding) return Held();
  Frame out;
  if (lap_pending && Lap(&out)) return out;
  ControlBlock* control = ring.control;
  for (;;) {
    if (cursor == cached_write) {
      // [S1] acquire: pairs with [B1]; the frames before write_position are complete.
      const std::uint64_t write = control->write_position.load(std::memory_order_acquire);
      if (write < cursor) return {Result::kCorrupted, false, {}, 0};
      cached_write = write;
      if (write == cursor) {
        // [S4] acquire: pairs with [B6]; then reload: drain what was committed before close().
        if (control->closed.load(std::memory_order_acquire) == 0) {
          // Caught up: deferred releases must become visible, or a publisher blocked on them
          // could never use the room they freed (and would not be woken).
          PublishDeferred();
          return {Result::kWouldBlock, false, {}, 0};
        }
        const std::uint64_t last = control->write_position.load(std::memory_order_acquire);
        if (last == cursor) return {Result::kClosed, false, {}, 0};
        if (last < cursor) return {Result::kCorrupted, false, {}, 0};
        cached_write = last;
      }
    }
    DecodedFrame f;
    if (cached_write - cursor <= ring.capacity) {
      f = DecodeFrameAt(ring.data, ring.capacity, ring.max_frame, cursor, cached_write);
    }
    // [S3] acquire fence, then the tail: the header copied above is intact if the tail has not
    // passed the cursor. (More than a ring ahead means the tail passed it, or corruption, which
    // Lap tells apart.)
    Fence(std::memory_order_acquire);
    if (control->oldest_position.load(std::memory_order_relaxed) > cursor ||
        cached_write - cursor > ring.capacity) {
      if (Lap(&out)) return out;
      continue;
    }
    if (f.kind == DecodedFrame::Kind::kCorrupted) return {Result::kCorrupted, false, {}, 0};
    // A sequence number above the expected one is a gap a crashed publisher left (frames it
    // committed but never published); below it, corruption.
    if (synced && f.sequence < expected) return {Result::kCorrupted, false, {}, 0};
    expected = f.sequence;
    synced = true;
    if (f.kind == DecodedFrame::Kind::kPadding) {
      cursor = f.next_position;
      PublishCursor();  // the publisher may need exactly this room
      continue;
    }
    const std::span<const std::byte> data(ring.data + f.payload_offset, f.length);
    held_data = data;
    held_sequence = f.sequence;
    held_end = f.next_position;
    holding = true;
    // From the locals, not Held(): a reload of held_data just stored stalled (see spsc.cc).
    return {Result::kOk, false, data, f.sequence};
  }
}

bool BroadcastSubscriberState::Intact() const {
  if (!holding) return false;
  // [S3] acquire fence: every read of the frame's bytes before it is validated by the tail load.
  Fence(std::memory_order_acquire);
  return ring.control->oldest_position.load(std::memory_order_relaxed) <= cursor;
}

Result BroadcastSubscriberState::Release(bool publish) {
  if (!holding) {
    if (publish) PublishDeferred();  // release() without a frame: the batch's publication step
    return Result::kOk;
  }
  const bool intact = Intact();
  holding = false;
  if (!intact) {
    lap_pending = true;  // the next read reports the lap, this frame included
    return Result::kLapped;
  }
  cursor = held_end;
  expected = held_sequence + 1;
  endpoint->CountFrameLater(held_data.size());  // stored by PublishCursor()
  if (publish || cursor - published_cursor >= ring.capacity / kBroadcastDeferredDivisor) {
    PublishCursor();
  }
  return Result::kOk;
}

// Receive finishes a copying receive of `first` (what read/try_read returned).
Received BroadcastSubscriberState::Receive(const Frame& first, std::span<std::byte> buffer) {
  if (first.result == Result::kLapped) {
    return {Result::kLapped, 0, first.sequence, false, last_missed};
  }
  Received r = CopyOut(first, buffer);
  if (!r.ok()) return r;
  if (Release() == Result::kOk) return r;  // validated after the copy
  // Torn during the copy: report the lap now (or what stands in its way).
  const Frame lap = TryRead();
  if (lap.result == Result::kLapped) return {Result::kLapped, 0, lap.sequence, false, last_missed};
  return {lap.result == Result::kOk ? Result::kCorrupted : lap.result, 0, 0};
}

}  // namespace internal

// ---- BroadcastPublisher ----

absl::StatusOr<BroadcastPublisher> BroadcastPublisher::Attach(std::string_view name,
                                                              const EndpointOptions& options) {
  auto endpoint =
      internal::Endpoint::Attach(name, Kind::kBroadcast, internal::Role::kProducer, options);
  if (!endpoint.ok()) return endpoint.status();
  return BroadcastPublisher(
      std::make_unique<internal::BroadcastPublisherState>(std::move(*endpoint)));
}

BroadcastPublisher::BroadcastPublisher(std::unique_ptr<internal::BroadcastPublisherState> state)
    : state_(std::move(state)) {}
BroadcastPublisher::BroadcastPublisher(BroadcastPublisher&&) noexcept = default;
BroadcastPublisher& BroadcastPublisher::operator=(BroadcastPublisher&&) noexcept = default;
BroadcastPublisher::~BroadcastPublisher() = default;

Claim BroadcastPublisher::try_claim(std::size_t size) {
  Claim c = state_->TryClaimFast(size);
  if (c.result != Result::kWouldBlock) [[likely]]
    return c;
  return internal::PollOutOfLine(
      *state_, [size](auto& s) __attribute__((always_inline)) { return s.TryClaim(size); });
}
Claim BroadcastPublisher::claim(std::size_t size, absl::Time deadline) {
  Claim c = state_->TryClaimFast(size);
  if (c.result != Result::kWouldBlock) [[likely]]
    return c;
  return internal::WaitOutOfLine<&internal::ControlBlock::space_ready>(
      *state_,
      deadline, [size](auto& s) __attribute__((always_inline)) { return s.TryClaim(size); });
}
Result BroadcastPublisher::commit() {
  state_->Commit(state_->claim_size, /*publish=*/true);
  return Result::kOk;
}
Result BroadcastPublisher::commit(std::size_t size) {
  state_->Commit(size, /*publish=*/true);
  return Result::kOk;
}
void BroadcastPublisher::commit_deferred() { state_->Commit(state_->claim_size, false); }
void BroadcastPublisher::commit_deferred(std::size_t size) { state_->Commit(size, false); }
void BroadcastPublisher::flush() { state_->Publish(); }
void BroadcastPublisher::abort() { state_->claimed = false; }

Result BroadcastPublisher::try_send(std::span<const std::byte> payload) {
  Claim c = try_claim(payload.size());
  if (!c.ok()) return c.result;
  if (!payload.empty()) std::memcpy(c.data.data(), payload.data(), payload.size());
  state_->Commit(payload.size(), /*publish=*/true);
  return Result::kOk;
}
Result BroadcastPublisher::send(std::span<const std::byte> payload, absl::Time deadline) {
  Claim c = claim(payload.size(), deadline);
  if (!c.ok()) return c.result;
  if (!payload.empty()) std::memcpy(c.data.data(), payload.data(), payload.size());
  state_->Commit(payload.size(), /*publish=*/true);
  return Result::kOk;
}

void BroadcastPublisher::close() { state_->Close(); }
std::size_t BroadcastPublisher::max_frame() const { return state_->ring.max_frame; }
std::uint64_t BroadcastPublisher::next_sequence() const { return state_->next_sequence; }
std::string_view BroadcastPublisher::name() const { return state_->endpoint->name(); }
OverflowPolicy BroadcastPublisher::overflow() const {
  return state_->ring.overwrite ? OverflowPolicy::kOverwrite : OverflowPolicy::kBlock;
}
ChannelCounters BroadcastPublisher::counters() const {
  return internal::SumCounters(state_->endpoint->segment());
}

// ---- BroadcastSubscriber ----

absl::StatusOr<BroadcastSubscriber> BroadcastSubscriber::Attach(std::string_view name,
                                                                StartAt start,
                                                                const EndpointOptions& options) {
  if (start != StartAt::kLatest && start != StartAt::kOldest) {
    return absl::InvalidArgumentError(
        absl::StrCat("shmring: unknown StartAt value ", static_cast<int>(start)));
  }
  auto endpoint =
      internal::Endpoint::Attach(name, Kind::kBroadcast, internal::Role::kConsumer, options);
  if (!endpoint.ok()) return endpoint.status();
  return BroadcastSubscriber(
      std::make_unique<internal::BroadcastSubscriberState>(std::move(*endpoint), start));
}

BroadcastSubscriber::BroadcastSubscriber(std::unique_ptr<internal::BroadcastSubscriberState> state)
    : state_(std::move(state)) {}
BroadcastSubscriber::BroadcastSubscriber(BroadcastSubscriber&&) noexcept = default;
BroadcastSubscriber& BroadcastSubscriber::operator=(BroadcastSubscriber&&) noexcept = default;
BroadcastSubscriber::~BroadcastSubscriber() = default;

Frame BroadcastSubscriber::try_read() {
  Frame f = state_->TryReadFast();
  if (f.result != Result::kWouldBlock) [[likely]]
    return f;
  return internal::PollOutOfLine(
      *state_, [](auto& s) __attribute__((always_inline)) { return s.TryRead(); });
}
Frame BroadcastSubscriber::read(absl::Time deadline) {
  Frame f = state_->TryReadFast();
  if (f.result != Result::kWouldBlock) [[likely]]
    return f;
  return internal::WaitOutOfLine<&internal::ControlBlock::data_ready>(
      *state_, deadline, [](auto& s) __attribute__((always_inline)) { return s.TryRead(); });
}
Result BroadcastSubscriber::release() { return state_->Release(); }
Result BroadcastSubscriber::release_deferred() { return state_->Release(/*publish=*/false); }
bool BroadcastSubscriber::intact() const { return state_->Intact(); }

Received BroadcastSubscriber::try_receive(std::span<std::byte> buffer) {
  return state_->Receive(try_read(), buffer);
}
Received BroadcastSubscriber::receive(std::span<std::byte> buffer, absl::Time deadline) {
  for (;;) {
    const Received r = state_->Receive(read(deadline), buffer);
    if (r.result != Result::kWouldBlock) return r;  // a lap still settling: wait again
  }
}

std::uint64_t BroadcastSubscriber::last_missed() const { return state_->last_missed; }
std::uint64_t BroadcastSubscriber::missed() const { return state_->missed_total; }
std::size_t BroadcastSubscriber::max_frame() const { return state_->ring.max_frame; }
std::uint64_t BroadcastSubscriber::next_sequence() const {
  return state_->holding ? state_->held_sequence : state_->expected;
}
std::string_view BroadcastSubscriber::name() const { return state_->endpoint->name(); }
OverflowPolicy BroadcastSubscriber::overflow() const {
  return state_->ring.overwrite ? OverflowPolicy::kOverwrite : OverflowPolicy::kBlock;
}
ChannelCounters BroadcastSubscriber::counters() const {
  return internal::SumCounters(state_->endpoint->segment());
}

}  // namespace shmring
