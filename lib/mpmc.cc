// mpmc.cc — the multi-producer multi-consumer slot ring (a Vyukov bounded queue in shared memory,
// made crash-safe with the endpoint table and the OFD liveness locks).
//
// Ordering protocol
// -----------------
// Tickets: control.write_position is the next ticket to claim, control.read_position the next
// ticket to dequeue; both only grow and only move by CAS. Ticket t lives in slot t % capacity and
// is the frame's sequence number. The slot's `turn` says what ticket t is doing (lib/layout.h):
//   t                free for ticket t          (set by CreateChannel or by the release of t - cap)
//   t + 1            committed frame of t       (producer, [P3])
//   (t + 1)|Abandon  t's producer died/aborted  (consumer [X1] or the producer itself [P7])
//   t + capacity     released: free for t + cap (consumer, [C3], or a rescuer [R3])
//
// Producer (any number, each with an EndpointEntry):
//   [P1] turn.load(acquire) == pos: pairs with [C3]/[R3]; the slot's last reader is done with it.
//   [P0] entry.claim_ticket = pos (relaxed), published by the release half of [P2].
//   [P2] write_position CAS pos -> pos+1 (seq_cst). Then [P6] closed.load(seq_cst): a claim that
//        lands after close() abandons its own ticket and returns kClosed (see [C7]).
//   header + payload are plain stores, published by [P3] turn CAS t -> t+1 (release). The CAS
//        fails only if the slot was declared abandoned ([X1]); commit() then returns kAbandoned.
//   [P4] entry.claim_ticket = none (release), after [P3]: whoever reads the cleared claim with
//        acquire also sees the commit, so its abandon CAS [X1] fails.
//   Then Notify(data_ready, INT_MAX): several consumers may sleep.
// Consumer (any number, competing):
//   [C1] read_position.load(acquire); [C2] turn.load(acquire) pairs with [P3]/[X1]/[P7].
//   [C0] entry.held_ticket = r (relaxed), published by the release half of [C5].
//   [C5] read_position CAS r -> r+1 (acq_rel): ticket r is ours. A committed frame is read in
//        place; an abandoned one is released at once (a visible, counted sequence gap).
//   [C3] release(): turn.store(t + capacity, release), pairs with [P1]; then [C4]
//        entry.held_ticket = none (release), after [C3]. Then Notify(space_ready, INT_MAX).
//   [C6] write_position.load(acquire) > r while turn == r: ticket r is claimed, not committed.
//        (Loaded only after spinning or once closed: a consumer spinning on an empty ring polls
//        just the slot's turn, not the line every claim writes.) The acquire pairs with the owner's
//        [P2] (a release sequence), so the owner's [P0] is visible: after spinning, a consumer
//        scans the table ([X0], claim_ticket with acquire, pairing with [P4]); if no LIVE endpoint
//        (OFD lock held) claims r, [X1] turn CAS r -> (r+1)|Abandoned (acq_rel) races the owner's
//        [P3]: exactly one wins. A SIGSTOPped producer still holds its lock and is never abandoned.
//   [C7] empty and closed: closed.load(seq_cst), then write_position.load(seq_cst) == r means
//        drained. With [P5] close (seq_cst store) and [P2]/[P6] all in the single total order, a
//        claim the consumer did not see finds `closed` set at [P6] and abandons itself, so no
//        committed frame appears behind an end-of-stream.
//
// Consumer death (the choice documented here). A consumer announces the ticket it dequeues in
// held_ticket before [C5] and clears it after [C3]. Slot t is *orphaned* when turn is t+1 or
// (t+1)|Abandoned, t < read_position, and no live consumer entry holds t. An orphan is adopted
// by a live consumer and REDELIVERED (Counters::redelivered); an orphaned abandoned slot is just
// released. Rescues take the recovery lock (an OFD lock on kRecoveryLockOffset, dropped by the
// kernel if the rescuer dies), re-check under it — read_position, then the holders [R0] (acquire,
// pairs with [C4]), then turn — and record the adopter's held_ticket [R1] before unlocking, so
// at most one live consumer holds a frame at a time. (RMWs [R2] on the slot's turn carry the
// lock's order into the memory model.) Found by:
//   - the newcomer that takes a dead consumer's entry (Endpoint::previous().held_ticket);
//   - a consumer whose ring is "empty" while its next slot still holds ticket r - capacity
//     (the orphan blocks every producer): checked after spinning, then at most every 1 ms;
//   - an idle consumer's sweep of the table for dead entries with a held ticket (every 10 ms);
//   - a consumer about to report end-of-stream, which scans the last `capacity` tickets.
// Guarantee: every committed frame is delivered; it is delivered more than once only when a
// consumer died holding it (read, not released), and then once more per such death. A redelivered
// frame may arrive after later frames of the same producer; its sequence number says so.
// A consumer destroyed while holding a frame leaves it orphaned the same way (found by the second
// and last paths: within one lap of the ring, or at close).
//
// Producer death: a producer killed between [P2] and [P3] leaves turn == t with its claim in its
// entry; it costs exactly that one slot ([X1] skips it). A newcomer that takes the dead entry
// clears the stale claim at once (then nobody claims t). Waiter flags are cleared by the waker
// (endpoint.h), so a dead sleeper costs at most one wake-up.
//
// Known limits: (1) a producer announces a ticket before its CAS [P2]; one stopped exactly
// between a *losing* CAS and its next poll shows a stale claim, which delays (never wrongs) the
// abandonment of that ticket if its real owner died — until the stopped producer runs again.
// (2) A rescuer stopped while it holds the recovery lock delays other rescues the same way.
//
// The segment is treated as hostile: positions are loaded once and bounded (read <= write <=
// read + capacity), slot indices are masked, header.sequence must equal the ticket and
// header.length must be <= max_frame, loops are bounded; violations return kCorrupted.
#include "shmring/mpmc.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "endpoint.h"

namespace shmring {
namespace internal {
namespace {

// Bound on the retries of one try_ call (each retry means another endpoint made progress).
constexpr int kMaxRetries = 1024;
// Stalled polls before the endpoint table is scanned (after spinning), and rescan intervals.
constexpr std::uint32_t kStallPolls = 64;
constexpr absl::Duration kStallInterval = absl::Milliseconds(1);
constexpr absl::Duration kSweepInterval = absl::Milliseconds(10);

bool IsStuck(std::uint64_t turn, std::uint64_t ticket) {
  return turn == ticket + 1 || turn == ((ticket + 1) | kTurnAbandoned);
}

}  // namespace

struct SlotRing {
  Segment* segment;
  ControlBlock* control;
  std::byte* data;
  std::uint64_t capacity;
  std::uint64_t mask;
  std::uint32_t max_frame;
  std::uint32_t stride;
  std::uint32_t max_endpoints;
  explicit SlotRing(const Endpoint& ep)
      : segment(&ep.segment()),
        control(ep.control()),
        data(ep.segment().data()),
        capacity(ep.segment().geometry().capacity),
        mask(ep.segment().geometry().capacity - 1),
        max_frame(ep.segment().geometry().max_frame),
        stride(ep.segment().geometry().slot_stride),
        max_endpoints(ep.segment().geometry().max_endpoints) {}
  MpmcSlotHeader* slot(std::uint64_t ticket) const {
    return reinterpret_cast<MpmcSlotHeader*>(data + (ticket & mask) * stride);
  }
  std::byte* payload(std::uint64_t ticket) const {
    return data + (ticket & mask) * stride + sizeof(MpmcSlotHeader);
  }
};

// StallGate decides when a poll that keeps seeing the same stalled state runs the expensive check
// (a scan of the endpoint table and lock probes): after `polls` polls (spinning), then at most
// every `interval`. The threshold is capped by the endpoint's spin phase, so a hybrid waiter
// checks before it first sleeps (afterwards it polls at least every kMaxSleep); in
// WaitMode::kBlock every poll follows a sleep, so the first one checks.
class StallGate {
 public:
  StallGate(std::uint32_t polls, absl::Duration interval, const EndpointOptions& options)
      : polls_(Threshold(polls, options)), interval_(interval) {}
  bool Due(std::uint64_t key) {
    if (key != key_) {
      key_ = key;
      count_ = 0;
    }
    if (++count_ < polls_) return false;
    const absl::Time now = WallNow();
    if (count_ == polls_ || now - last_ >= interval_) {
      last_ = now;
      return true;
    }
    return false;
  }
  void Reset() { key_ = kNoTicket; }

 private:
  static std::uint32_t Threshold(std::uint32_t polls, const EndpointOptions& options) {
    switch (options.wait) {
      case WaitMode::kBlock:
        return 1;
      case WaitMode::kHybrid:
        return std::max<std::uint32_t>(1, std::min(polls, options.spin_iterations));
      case WaitMode::kSpin:
        break;
    }
    return polls;
  }

  std::uint32_t polls_;
  absl::Duration interval_;
  std::uint64_t key_ = kNoTicket;
  std::uint64_t count_ = 0;
  absl::Time last_ = absl::InfinitePast();
};

struct MpmcProducerState {
  std::unique_ptr<Endpoint> endpoint;
  SlotRing ring;
  EndpointEntry* self;
  bool claimed = false;
  std::uint64_t ticket = 0;  // the outstanding claim
  std::size_t claim_size = 0;
  bool announced = false;  // self->claim_ticket may hold a ticket we do not own

  explicit MpmcProducerState(std::unique_ptr<Endpoint> ep)
      : endpoint(std::move(ep)), ring(*endpoint), self(endpoint->entry()) {
    PrefaultDataArea(ring.data, ring.segment->geometry().data_size, /*for_writing=*/true);
    // A dead producer's claim left in this entry: clearing it lets consumers skip that ticket
    // (nobody live claims it). Release: pairs with the acquire in the consumers' scan [X0].
    // A dead consumer's held_ticket stays: consumers ignore held tickets of non-consumer
    // entries and find the orphan through it (see the protocol above).
    self->claim_ticket.store(kNoTicket, std::memory_order_release);
  }

  ~MpmcProducerState() { Abort(); }

  void Unannounce() {
    if (!announced) return;
    announced = false;
    // Relaxed: a stale announcement only makes consumers wait; this one is best effort.
    self->claim_ticket.store(kNoTicket, std::memory_order_relaxed);
  }

  Claim TryClaim(std::size_t size) {
    // Acquire: pairs with [P5]; a claim racing close() is caught by [P6] below.
    if (ring.control->closed.load(std::memory_order_acquire) != 0) return {Result::kClosed, {}, 0};
    if (size > ring.max_frame) return {Result::kTooLarge, {}, 0};
    if (claimed) Abort();  // a second claim replaces an uncommitted one
    // Relaxed: only a hint; the CAS [P2] decides.
    std::uint64_t pos = ring.control->write_position.load(std::memory_order_relaxed);
    for (int retry = 0; retry < kMaxRetries; ++retry) {
      MpmcSlotHeader* slot = ring.slot(pos);
      // [P1] acquire: pairs with the release of the slot's previous ticket [C3]/[R3].
      const std::uint64_t turn = slot->turn.load(std::memory_order_acquire);
      if (turn == pos) {
        // [P0] relaxed: published by the release half of [P2], read after [C6].
        self->claim_ticket.store(pos, std::memory_order_relaxed);
        announced = true;
        // [P2] seq_cst: release for [P0] (pairs with [C6]); seq_cst for the close race [C7].
        if (ring.control->write_position.compare_exchange_strong(
                pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
          claimed = true;
          ticket = pos;
          claim_size = size;
          announced = false;
          // [P6] seq_cst: see [C7]. A claim that lands after close() is given up.
          if (ring.control->closed.load(std::memory_order_seq_cst) != 0) {
            Abort();
            return {Result::kClosed, {}, 0};
          }
          return {Result::kOk, std::span<std::byte>(ring.payload(pos), size), pos};
        }
        continue;  // `pos` now holds the current write_position
      }
      // Relaxed: only tells whether `pos` is still the next ticket; a stale turn above can only
      // make this call report a full ring once more (the caller polls again).
      const std::uint64_t now = ring.control->write_position.load(std::memory_order_relaxed);
      if (now != pos) {  // another producer took `pos`: try the next ticket
        pos = now;
        continue;
      }
      // write_position has not moved, so the slot cannot be ahead of it (that would be
      // corruption): it still holds ticket pos - capacity (not committed, not released, or an
      // abandoned claim being skipped). The ring is full.
      Unannounce();
      if ((turn & ~kTurnAbandoned) > pos) return {Result::kCorrupted, {}, 0};
      return {Result::kWouldBlock, {}, 0};
    }
    Unannounce();
    return {Result::kWouldBlock, {}, 0};
  }

  Result Commit(std::size_t size) {
    if (!claimed) return Result::kOk;  // nothing outstanding: no-op
    claimed = false;
    if (size > claim_size) size = claim_size;
    MpmcSlotHeader* slot = ring.slot(ticket);
    slot->sequence = ticket;
    slot->length = static_cast<std::uint32_t>(size);
    slot->flags = 0;
    slot->producer = endpoint->index();
    slot->reserved = 0;
    std::uint64_t expected = ticket;
    // [P3] release: publishes the header and payload; pairs with [C2]. Fails only if the slot was
    // declared abandoned [X1] (this endpoint was taken for dead).
    const bool committed = slot->turn.compare_exchange_strong(
        expected, ticket + 1, std::memory_order_release, std::memory_order_relaxed);
    // [P4] release, after [P3]: pairs with the acquire in [X0].
    self->claim_ticket.store(kNoTicket, std::memory_order_release);
    if (!committed) return Result::kAbandoned;
    endpoint->CountFrame(size);
    endpoint->Notify(ring.control->data_ready, INT_MAX);
    return Result::kOk;
  }

  void Abort() {
    if (!claimed) return;
    claimed = false;
    std::uint64_t expected = ticket;
    // [P7] release: consumers skip the slot (a counted gap). Pairs with [C2].
    if (ring.slot(ticket)->turn.compare_exchange_strong(expected, (ticket + 1) | kTurnAbandoned,
                                                        std::memory_order_release,
                                                        std::memory_order_relaxed)) {
      endpoint->Count(&Counters::abandoned);
    }
    // Release, after [P7]: as [P4].
    self->claim_ticket.store(kNoTicket, std::memory_order_release);
    endpoint->Notify(ring.control->data_ready, INT_MAX);
  }

  void Close() {
    Abort();
    // [P5] (in PublishClose) seq_cst: pairs with [C7] and [P6]; wakes every sleeper.
    PublishClose(*ring.control);
  }
};

struct MpmcConsumerState {
  std::unique_ptr<Endpoint> endpoint;
  SlotRing ring;
  EndpointEntry* self;
  std::uint32_t self_index;
  // The frame handed out by the last successful read, until release().
  bool holding = false;
  std::uint64_t held_ticket = 0;
  Frame held;
  bool announced = false;  // self->held_ticket may hold a ticket we do not hold
  StallGate stall;
  absl::Time last_sweep = absl::InfinitePast();  // of the table, for dead consumers' frames

  MpmcConsumerState(std::unique_ptr<Endpoint> ep, const EndpointOptions& options)
      : endpoint(std::move(ep)),
        ring(*endpoint),
        self(endpoint->entry()),
        self_index(endpoint->index()),
        stall(kStallPolls, kStallInterval, options) {
    PrefaultDataArea(ring.data, ring.segment->geometry().data_size, /*for_writing=*/false);
    // A dead producer's claim left in this entry: clear it so consumers skip that ticket.
    self->claim_ticket.store(kNoTicket, std::memory_order_release);
    // A dead consumer's frame left in this entry: adopt it (redelivery) or, if it is not ours to
    // take, forget the record.
    const std::uint64_t inherited = endpoint->previous().held_ticket;
    if (inherited != kNoTicket && Rescue(inherited, /*wait_for_lock=*/true) != Result::kOk) {
      self->held_ticket.store(kNoTicket, std::memory_order_release);
    }
  }

  // Destruction: an unreleased frame stays in its slot, orphaned (see the protocol above).
  ~MpmcConsumerState() = default;

  void Announce(std::uint64_t t) {
    // [C0] relaxed: published by the release half of [C5].
    self->held_ticket.store(t, std::memory_order_relaxed);
    announced = true;
  }
  void Unannounce() {
    if (!announced) return;
    announced = false;
    // Relaxed: a stale announcement only makes rescuers wait; clearing it is best effort.
    self->held_ticket.store(kNoTicket, std::memory_order_relaxed);
  }

  // FrameAt reads slot t's header once and bounds it.
  Frame FrameAt(std::uint64_t t) const {
    const MpmcSlotHeader* slot = ring.slot(t);
    const std::uint64_t sequence = slot->sequence;
    const std::uint32_t length = slot->length;
    if (sequence != t || length > ring.max_frame) return {Result::kCorrupted, {}, 0};
    return {Result::kOk, std::span<const std::byte>(ring.payload(t), length), t};
  }

  // FreeSlot releases ticket t's slot for ticket t + capacity.
  void FreeSlot(std::uint64_t t) {
    // [C3] release: pairs with [P1]; we are done reading the slot.
    ring.slot(t)->turn.store(t + ring.capacity, std::memory_order_release);
    // [C4] release, after [C3]: pairs with [R0]; a rescuer that sees the cleared record also sees
    // the slot released.
    self->held_ticket.store(kNoTicket, std::memory_order_release);
    announced = false;
    endpoint->Notify(ring.control->space_ready, INT_MAX);
  }

  Frame Hold(std::uint64_t t, const Frame& f) {
    holding = true;
    held_ticket = t;
    held = f;
    announced = false;
    stall.Reset();
    return f;
  }

  // LiveHolder: some live consumer other than us records ticket t as held (or is about to).
  bool LiveHolder(std::uint64_t t) const {
    for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
      if (i == self_index) continue;
      EndpointEntry* e = ring.segment->endpoint(i);
      // [R0] acquire: pairs with [C4] (and, through [C1], with [C5] for the announcement).
      if (e->held_ticket.load(std::memory_order_acquire) != t) continue;
      // Acquire: pairs with Endpoint::Attach's release of `role`. A producer that took over a
      // dead consumer's entry keeps its stale record; it holds nothing.
      if (e->role.load(std::memory_order_acquire) != static_cast<std::uint32_t>(Role::kConsumer)) {
        continue;
      }
      if (ring.segment->EndpointAlive(i)) return true;
    }
    return false;
  }

  bool LockRecovery(bool wait) {
    const absl::Time give_up = WallNow() + absl::Seconds(1);
    for (;;) {
      if (TryLockByte(ring.segment->fd(), kRecoveryLockOffset)) return true;
      if (!wait || WallNow() >= give_up) return false;
      absl::SleepFor(absl::Microseconds(100));
    }
  }

  // Rescue takes over ticket t if its slot is orphaned (see the protocol): kOk with the frame
  // held (a redelivery), kCorrupted, or kWouldBlock (nothing to take; an abandoned orphan was
  // released).
  Result Rescue(std::uint64_t t, bool wait_for_lock) {
    // Cheap filters first (no lock, no syscall unless the slot is stuck).
    if (t >= ring.control->read_position.load(std::memory_order_acquire)) {
      return Result::kWouldBlock;
    }
    if (!IsStuck(ring.slot(t)->turn.load(std::memory_order_acquire), t) || LiveHolder(t)) {
      return Result::kWouldBlock;
    }
    if (!LockRecovery(wait_for_lock)) return Result::kWouldBlock;
    // Under the lock nobody else adopts or releases an orphan. The kernel orders the lock
    // holders in time; [R2] makes that order visible to the memory model (and to TSan): an RMW
    // on the slot's turn reads the previous rescuer's [R2]/[R3], so its record [R1] is seen.
    MpmcSlotHeader* slot = ring.slot(t);
    // [R2] acq_rel RMW that changes nothing.
    slot->turn.fetch_add(0, std::memory_order_acq_rel);
    // Re-check in this order: the holders [R0] before the turn, so that a holder's release seen
    // as a cleared record [C4] is also seen in the turn.
    Result result = Result::kWouldBlock;
    bool freed = false;
    if (t < ring.control->read_position.load(std::memory_order_acquire) && !LiveHolder(t)) {
      const std::uint64_t turn = slot->turn.load(std::memory_order_acquire);
      if (turn == t + 1) {
        // [R1]: the record the next rescuer's [R0] sees; published by the [R2] below.
        self->held_ticket.store(t, std::memory_order_relaxed);
        slot->turn.fetch_add(0, std::memory_order_acq_rel);  // [R2]
        const Frame f = FrameAt(t);
        if (f.ok()) {
          Hold(t, f);
          endpoint->Count(&Counters::redelivered);
          result = Result::kOk;
        } else {
          // [R3] release: as [C3].
          slot->turn.store(t + ring.capacity, std::memory_order_release);
          self->held_ticket.store(kNoTicket, std::memory_order_release);
          result = Result::kCorrupted;
          freed = true;
        }
      } else if (turn == ((t + 1) | kTurnAbandoned)) {
        // A dead consumer was skipping this abandoned claim: finish the skip. [R3] as [C3].
        slot->turn.store(t + ring.capacity, std::memory_order_release);
        freed = true;
      }
    }
    UnlockByte(ring.segment->fd(), kRecoveryLockOffset);
    if (freed) endpoint->Notify(ring.control->space_ready, INT_MAX);
    return result;
  }

  // TryAbandon skips ticket t (claimed, not committed) if no live endpoint claims it. Returns
  // true if the slot changed state (abandoned now, or committed meanwhile): retry the read.
  bool TryAbandon(std::uint64_t t) {
    for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
      if (i == self_index) continue;
      // [X0] acquire: pairs with [P4]. The owner's [P0] is visible through [C6].
      if (ring.segment->endpoint(i)->claim_ticket.load(std::memory_order_acquire) == t &&
          ring.segment->EndpointAlive(i)) {
        return false;  // its owner lives (maybe slow or stopped): never treated as dead
      }
    }
    std::uint64_t expected = t;
    // [X1] acq_rel: races the owner's [P3]; pairs with [C2] of the consumer that skips it.
    if (ring.slot(t)->turn.compare_exchange_strong(expected, (t + 1) | kTurnAbandoned,
                                                   std::memory_order_acq_rel,
                                                   std::memory_order_acquire)) {
      endpoint->Count(&Counters::abandoned);
      // Consumers asleep behind the stuck slot must look again.
      endpoint->Notify(ring.control->data_ready, INT_MAX);
      return true;
    }
    return expected != t;
  }

  // SweepEntries: rescue the frames of dead consumers recorded in the table.
  Frame SweepEntries(std::uint64_t read) {
    for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
      if (i == self_index) continue;
      EndpointEntry* e = ring.segment->endpoint(i);
      // Acquire: pairs with [C4]/[R1].
      const std::uint64_t t = e->held_ticket.load(std::memory_order_acquire);
      if (t == kNoTicket || t >= read) continue;
      if (!IsStuck(ring.slot(t)->turn.load(std::memory_order_acquire), t)) continue;
      const Result r = Rescue(t, /*wait_for_lock=*/false);
      if (r == Result::kOk) return held;
      if (r == Result::kCorrupted) return {Result::kCorrupted, {}, 0};
    }
    return {Result::kWouldBlock, {}, 0};
  }

  // SweepWindow: before end-of-stream, rescue every orphan among the last `capacity` tickets.
  Frame SweepWindow(std::uint64_t read) {
    const std::uint64_t first = read > ring.capacity ? read - ring.capacity : 0;
    for (std::uint64_t t = first; t < read; ++t) {
      if (!IsStuck(ring.slot(t)->turn.load(std::memory_order_acquire), t)) continue;
      const Result r = Rescue(t, /*wait_for_lock=*/true);
      if (r == Result::kOk) return held;
      if (r == Result::kCorrupted) return {Result::kCorrupted, {}, 0};
    }
    return {Result::kWouldBlock, {}, 0};
  }

  enum class Drain { kOpen, kMoved, kDone };
  // CheckClosed: the ring is empty at `read`. kDone with *out = kClosed (or a rescued orphan)
  // if the channel is closed and drained; kMoved if a claim landed meanwhile; kOpen otherwise.
  // A frame held by a live consumer does not delay end-of-stream (it is that consumer's).
  Drain CheckClosed(std::uint64_t read, Frame* out) {
    // [C7] seq_cst: pairs with [P5] and [P6].
    if (ring.control->closed.load(std::memory_order_seq_cst) == 0) return Drain::kOpen;
    if (ring.control->write_position.load(std::memory_order_seq_cst) != read) return Drain::kMoved;
    *out = SweepWindow(read);
    if (out->result == Result::kWouldBlock) *out = {Result::kClosed, {}, 0};
    return Drain::kDone;
  }

  Frame TryRead() {
    if (holding) return held;
    Frame out{Result::kWouldBlock, {}, 0};
    for (int retry = 0; retry < kMaxRetries; ++retry) {
      // [C1] acquire: pairs with [C5] of other consumers (their announcements).
      std::uint64_t read = ring.control->read_position.load(std::memory_order_acquire);
      MpmcSlotHeader* slot = ring.slot(read);
      // [C2] acquire: pairs with [P3] (frame contents), [X1]/[P7] (abandoned).
      const std::uint64_t turn = slot->turn.load(std::memory_order_acquire);
      if (IsStuck(turn, read)) {
        Announce(read);
        // [C5] acq_rel: takes ticket `read`; release publishes [C0].
        if (!ring.control->read_position.compare_exchange_strong(
                read, read + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
          continue;  // another consumer took it
        }
        if (turn != read + 1) {  // an abandoned claim: skip it, the ticket is a gap
          FreeSlot(read);
          stall.Reset();
          continue;
        }
        const Frame f = FrameAt(read);
        if (!f.ok()) {
          FreeSlot(read);
          return f;
        }
        return Hold(read, f);
      }
      if (turn == read) {
        // Ticket `read` is not committed: the ring is empty, or its producer is slow, stopped or
        // dead. Telling these apart needs write_position, a line every claim writes; it is
        // loaded only once the channel is closed or the stall gate fires, so a spinning consumer
        // does not pull that line away from the producers at every poll.
        Unannounce();
        // [C7] seq_cst: pairs with [P5] and [P6].
        const bool closed = ring.control->closed.load(std::memory_order_seq_cst) != 0;
        const bool due = stall.Due(read * 4 + 2);
        if (!closed && !due) return {Result::kWouldBlock, {}, 0};
        // [C6] acquire: pairs with [P2] (release sequence): the claimer's [P0] is visible.
        // seq_cst for [C7].
        const std::uint64_t write = ring.control->write_position.load(std::memory_order_seq_cst);
        if (write < read || write - read > ring.capacity) {
          // `read` may be stale: since we loaded it, ticket `read` may have been committed,
          // consumed and released, and producers may have claimed a lap further. Only an
          // unchanged read_position makes this impossible state a corruption.
          if (ring.control->read_position.load(std::memory_order_acquire) != read) continue;
          return {Result::kCorrupted, {}, 0};
        }
        if (write == read) {
          if (closed) {  // drained: end-of-stream, after handing over any orphan
            out = SweepWindow(read);
            if (out.result == Result::kWouldBlock) out = {Result::kClosed, {}, 0};
            return out;
          }
          const absl::Time now = WallNow();
          if (now - last_sweep >= kSweepInterval) {
            last_sweep = now;
            out = SweepEntries(read);
            if (out.result != Result::kWouldBlock) return out;
          }
          return {Result::kWouldBlock, {}, 0};
        }
        // Ticket `read` is claimed, not committed: its producer is slow, stopped, or dead.
        if (due && TryAbandon(read)) continue;
        return {Result::kWouldBlock, {}, 0};
      }
      const std::uint64_t base = turn & ~kTurnAbandoned;
      if (base > read + 1) {
        // Another consumer took ticket `read` (and maybe released it): reload.
        if (ring.control->read_position.load(std::memory_order_acquire) == read) {
          Unannounce();
          return {Result::kCorrupted, {}, 0};  // a slot ahead of both cursors
        }
        continue;
      }
      // The slot still holds ticket read - capacity: read but not released (or an abandoned
      // claim being skipped). If producers are stuck behind it, it may be a dead consumer's.
      Unannounce();
      if (read < ring.capacity || base != read - ring.capacity + 1) {
        // Not a state a current `read` can see (a stale one can): retry later.
        if (ring.control->read_position.load(std::memory_order_acquire) != read) continue;
        return {Result::kWouldBlock, {}, 0};
      }
      const std::uint64_t write = ring.control->write_position.load(std::memory_order_acquire);
      if (write == read) {  // nothing else to read: the end, if closed
        const Drain drain = CheckClosed(read, &out);
        if (drain == Drain::kMoved) continue;
        if (drain == Drain::kDone) return out;
      }
      if (write == read && stall.Due(read * 4 + 3)) {
        const Result r = Rescue(read - ring.capacity, /*wait_for_lock=*/false);
        if (r == Result::kOk) return held;
        if (r == Result::kCorrupted) return {Result::kCorrupted, {}, 0};
        if (IsStuck(slot->turn.load(std::memory_order_acquire), read - ring.capacity)) {
          return {Result::kWouldBlock, {}, 0};
        }
        continue;
      }
      return {Result::kWouldBlock, {}, 0};
    }
    Unannounce();
    return {Result::kWouldBlock, {}, 0};
  }

  void Release() {
    if (!holding) return;
    holding = false;
    endpoint->CountFrame(held.data.size());
    FreeSlot(held_ticket);
  }
};

}  // namespace internal

// ---- MpmcProducer ----

absl::StatusOr<MpmcProducer> MpmcProducer::Attach(std::string_view name,
                                                  const EndpointOptions& options) {
  auto endpoint = internal::Endpoint::Attach(name, Kind::kMpmc, internal::Role::kProducer, options);
  if (!endpoint.ok()) return endpoint.status();
  return MpmcProducer(std::make_unique<internal::MpmcProducerState>(std::move(*endpoint)));
}

MpmcProducer::MpmcProducer(std::unique_ptr<internal::MpmcProducerState> state)
    : state_(std::move(state)) {}
MpmcProducer::MpmcProducer(MpmcProducer&&) noexcept = default;
MpmcProducer& MpmcProducer::operator=(MpmcProducer&&) noexcept = default;
MpmcProducer::~MpmcProducer() = default;

Claim MpmcProducer::try_claim(std::size_t size) { return state_->TryClaim(size); }

Claim MpmcProducer::claim(std::size_t size, absl::Time deadline) {
  return state_->endpoint->Wait(state_->ring.control->space_ready, deadline,
                                [&] { return state_->TryClaim(size); });
}

Result MpmcProducer::commit() { return state_->Commit(state_->claim_size); }
Result MpmcProducer::commit(std::size_t size) { return state_->Commit(size); }
void MpmcProducer::abort() { state_->Abort(); }

Result MpmcProducer::try_send(std::span<const std::byte> payload) {
  Claim c = state_->TryClaim(payload.size());
  if (!c.ok()) return c.result;
  if (!payload.empty()) std::memcpy(c.data.data(), payload.data(), payload.size());
  return state_->Commit(payload.size());
}

Result MpmcProducer::send(std::span<const std::byte> payload, absl::Time deadline) {
  Claim c = claim(payload.size(), deadline);
  if (!c.ok()) return c.result;
  if (!payload.empty()) std::memcpy(c.data.data(), payload.data(), payload.size());
  return state_->Commit(payload.size());
}

void MpmcProducer::close() { state_->Close(); }
std::size_t MpmcProducer::max_frame() const { return state_->ring.max_frame; }
std::string_view MpmcProducer::name() const { return state_->endpoint->name(); }

// ---- MpmcConsumer ----

absl::StatusOr<MpmcConsumer> MpmcConsumer::Attach(std::string_view name,
                                                  const EndpointOptions& options) {
  auto endpoint = internal::Endpoint::Attach(name, Kind::kMpmc, internal::Role::kConsumer, options);
  if (!endpoint.ok()) return endpoint.status();
  return MpmcConsumer(std::make_unique<internal::MpmcConsumerState>(std::move(*endpoint), options));
}

MpmcConsumer::MpmcConsumer(std::unique_ptr<internal::MpmcConsumerState> state)
    : state_(std::move(state)) {}
MpmcConsumer::MpmcConsumer(MpmcConsumer&&) noexcept = default;
MpmcConsumer& MpmcConsumer::operator=(MpmcConsumer&&) noexcept = default;
MpmcConsumer::~MpmcConsumer() = default;

Frame MpmcConsumer::try_read() { return state_->TryRead(); }

Frame MpmcConsumer::read(absl::Time deadline) {
  return state_->endpoint->Wait(state_->ring.control->data_ready, deadline,
                                [&] { return state_->TryRead(); });
}

void MpmcConsumer::release() { state_->Release(); }

Received MpmcConsumer::try_receive(std::span<std::byte> buffer) {
  Received r = internal::CopyOut(state_->TryRead(), buffer);
  if (r.ok()) state_->Release();
  return r;
}

Received MpmcConsumer::receive(std::span<std::byte> buffer, absl::Time deadline) {
  Received r = internal::CopyOut(read(deadline), buffer);
  if (r.ok()) state_->Release();
  return r;
}

std::size_t MpmcConsumer::max_frame() const { return state_->ring.max_frame; }
std::string_view MpmcConsumer::name() const { return state_->endpoint->name(); }

}  // namespace shmring
