// mpmc.cc — the multi-producer multi-consumer slot ring (a Vyukov bounded queue in shared memory,
// made crash-safe with the endpoint table and the OFD liveness locks). This file holds the data
// path: claim/commit/abort/close/finish and the read fast path with release. Everything that
// deals with a stalled ring — dead producers' claims, dead consumers' frames, end-of-stream — is
// in lib/mpmc_recovery.cc.
//
// Ordering protocol (labels numbered in execution order within each actor)
// -----------------
// Tickets: control.write_position is the next ticket to claim, control.read_position the next
// ticket to dequeue; both only grow and only move by CAS. Ticket t lives in slot t % capacity and
// is the frame's sequence number. The slot's `turn` says what ticket t is doing (lib/layout.h):
//   t                free for ticket t          (set by CreateChannel or by the release of t - cap)
//   t + 1            committed frame of t       (producer, [P5])
//   (t + 1)|Abandon  t's producer died/aborted  (consumer [X2] or the producer itself [P7])
//   t + capacity     released: free for t + cap (consumer, [C5], or a rescuer [R7])
//
// Producer (any number, each with an EndpointEntry):
//   [P1] turn.load(acquire) == pos: pairs with [C5]/[R7]; the slot's last reader is done with it.
//   [P2] entry.claim_ticket = pos (relaxed), published by the release half of [P3].
//   [P3] write_position CAS pos -> pos+1 (seq_cst). Then [P4] closed.load(seq_cst): a claim that
//        lands after the stream ended abandons its own ticket and returns kClosed (see [E2]).
//   header + payload are plain stores, published by [P5] turn CAS t -> t+1 (release). The CAS
//        fails only if the slot was declared abandoned ([X2]); commit() then returns kAbandoned.
//   [P6] entry.claim_ticket = none (release), after [P5]: whoever reads the cleared claim with
//        acquire also sees the commit, so its abandon CAS [X2] fails.
//   Then Notify(data_ready, INT_MAX): several consumers may sleep.
//   [P7] abort(): turn CAS t -> (t+1)|Abandoned (release), then as [P6].
//   [P8] close(): PublishClose (channel.cc), closed CAS 0 -> kClosedByClose (seq_cst); pairs
//        with [P4], [E1].
//   finish(): [F1] entry.finished = 1 (seq_cst), [F2] control.finishing = 1 (seq_cst), then
//        [F3] ProducersDone: for every other entry, role (acquire), finished (seq_cst), liveness
//        lock. If no other attached producer is alive and unfinished: [P8] with kClosedByFinish.
//        Two producers finishing together: their [F1] and [F3] are all seq_cst, so at least one
//        of them sees the other's [F1] and ends the stream. A producer that dies unfinished has
//        no lock, so it does not count: consumers run [F3] too (drained, `finishing` set, after
//        spinning, then at most every 1 ms, sleeping at most kHolderRecheck) and end the stream
//        for it. A producer attached after the end finds `closed` at [P4]: kClosed.
// Consumer (any number, competing):
//   [C1] read_position.load(acquire); [C2] turn.load(acquire) pairs with [P5]/[X2]/[P7].
//   [C3] entry.held_ticket = r (relaxed), published by the release half of [C4].
//   [C4] read_position CAS r -> r+1 (acq_rel): ticket r is ours. A committed frame is read in
//        place; an abandoned one is released at once (a visible, counted sequence gap).
//   [C5] release(): turn.store(t + capacity, release), pairs with [P1]; then [C6]
//        entry.held_ticket = none (release), after [C5]. Then Notify(space_ready), and, once the
//        stream ended, Notify(data_ready): consumers waiting for the last held frame.
// Recovery and end-of-stream (lib/mpmc_recovery.cc):
//   [E1] closed.load(seq_cst); [E2] write_position.load(seq_cst) == r means drained. With [P8]
//        and [P3]/[P4] all in the single total order, a claim the consumer did not see finds
//        `closed` set at [P4] and abandons itself, so no committed frame appears behind an
//        end-of-stream. [E3] then turn.load(acquire) of every ticket in [r - capacity, r):
//        each must be released (pairs with [C5]/[R7]) before kClosed: a held frame delays the
//        end (its holder may still die, and then the frame goes to a live consumer).
//   [X1] write_position.load(acquire) > r while turn == r: ticket r is claimed, not committed.
//        (Loaded only after spinning or once closed: a consumer spinning on an empty ring polls
//        just the slot's turn, not the line every claim writes.) The acquire pairs with the owner's
//        [P3] (a release sequence), so the owner's [P2] is visible: the consumer scans the table
//        (claim_ticket with acquire, pairing with [P6]); if no LIVE endpoint (OFD lock held)
//        claims r, [X2] turn CAS r -> (r+1)|Abandoned (acq_rel) races the owner's [P5]: exactly
//        one wins. A SIGSTOPped producer still holds its lock and is never abandoned.
//   Rescue (see "Consumer death"): [R1] recovery lock; [R2] turn RMW; [R3] holders' records
//        (acquire, pairs with [C6]); [R4] turn (acquire); [R5] our record held_ticket = t;
//        [R6] turn RMW publishing [R5]; a corrupt frame is freed at once, [R7] as [C5].
//
// Worked interleaving 1 — abandonment vs a late commit. Producer P claimed t ([P2], [P3]) and is
// slow; consumer C stalls at r == t:
//   C: [C2] turn == t   C: [X1] write > t   C: scan: P.claim_ticket == t, P alive -> wait
//   ... P is SIGKILLed before [P5]: its lock is gone ...
//   C: scan: P.claim_ticket == t, P dead -> [X2] CAS t -> (t+1)|Abandoned wins; the gap counted.
// If P was only slow and commits meanwhile, the two CASes on `turn` race from the value t:
//   P: [P5] t -> t+1 wins, then [P6] clears the claim. C: [X2] fails, reads t+1: a frame; retry.
//   C: [X2] wins (only possible if C saw P dead: P's lock gone while P still runs means someone
//      closed its fd); P: [P5] fails -> commit() returns kAbandoned; the frame was never visible.
// And C's scan may run after [P6]: it reads claim none with acquire, synchronises with [P6], so
// its [X2] sees turn == t+1 (coherence after [P5]) and fails. A producer that announced t at
// [P2] but lost the CAS [P3] to P shows a stale claim until its next poll: this delays the
// abandonment of a dead P's ticket, never wrongs it.
//
// Worked interleaving 2 — rescue vs the dead consumer's release. Consumer D holds t (record
// held_ticket == t, turn == t+1); rescuer R checks whether t is orphaned:
//   D: [C5] turn = t+cap  D: [C6] record = none  R: [R3] record none  R: [R4] turn t+cap: nothing.
//   D: [C5] turn = t+cap  ... D killed ...        R: [R3] record t, D dead  R: [R4] t+cap: nothing.
//   ... D killed before [C5] ...                  R: [R3] record t, D dead  R: [R4] t+1: adopt.
//   R: [R3] record t, D alive -> not an orphan (a live holder keeps its frame, however slow).
// R must read the record before the turn: reading the turn first (t+1), then D releasing both,
// then the record (none) would adopt a released slot. With [R3] first, a record seen cleared
// ([C6], release -> acquire) implies [C5] is visible at [R4]. Two rescuers are serialised by the
// recovery lock, and the second's [R2] reads the first's [R6], so it sees the first's record
// [R5] at [R3] and leaves the frame to it.
//
// Consumer death (the choice documented here). A consumer announces the ticket it dequeues in
// held_ticket before [C4] and clears it after [C5]. Slot t is *orphaned* when turn is t+1 or
// (t+1)|Abandoned, t < read_position, and no live consumer entry holds t. An orphan is adopted
// by a live consumer and REDELIVERED (Frame::redelivered, Counters::redelivered); an orphaned
// abandoned slot is just released. Rescues take the recovery lock (an OFD lock on
// kRecoveryLockOffset, dropped by the kernel if the rescuer dies; a try_ call that finds it busy
// returns instead of waiting), re-check under it, and record the adopter's held_ticket [R5]
// before unlocking, so at most one live consumer holds a frame at a time. Found by:
//   - the newcomer that takes a dead consumer's entry (Endpoint::previous().held_ticket);
//   - a consumer whose ring is "empty" while its next slot still holds ticket r - capacity
//     (the orphan blocks every producer): checked after spinning, then at most every 1 ms;
//   - an idle consumer's sweep of the table for dead entries with a held ticket (every 10 ms);
//   - a consumer at end-of-stream, which scans the last `capacity` tickets ([E3]) and waits
//     (re-checking every kHolderRecheck at least) while any is held.
// Guarantee: every committed frame is delivered, and delivered before any consumer sees kClosed;
// it is delivered more than once only when a consumer died holding it (read, not released), and
// then once more per such death. A redelivered frame may arrive after later frames of the same
// producer; its sequence number says so. A consumer destroyed while holding a frame leaves it
// orphaned the same way (found by the second and last paths).
//
// Producer death: a producer killed between [P3] and [P5] leaves turn == t with its claim in its
// entry; it costs exactly that one slot ([X2] skips it). A newcomer that takes the dead entry
// clears the stale claim at once (then nobody claims t). Waiter flags are cleared by the waker
// (endpoint.h), so a dead sleeper costs at most one wake-up.
//
// Known limits: (1) a producer announces a ticket before its CAS [P3]; one stopped exactly
// between a *losing* CAS and its next poll shows a stale claim, which delays (never wrongs) the
// abandonment of that ticket if its real owner died — until the stopped producer runs again.
// (2) A rescuer stopped while it holds the recovery lock delays other rescues the same way.
//
// The segment is treated as hostile: positions are loaded once and bounded (read <= write <=
// read + capacity), slot indices are masked, header.sequence must equal the ticket and
// header.length must be <= max_frame, loops are bounded; violations return kCorrupted.
#include "shmring/mpmc.h"

#include <climits>
#include <cstring>

#include "mpmc_internal.h"

namespace shmring {
namespace internal {

bool ProducersDone(const SlotRing& ring, std::uint32_t self) {
  // [F3] Acquire: pairs with [F2] of the first finisher.
  if (ring.control->finishing.load(std::memory_order_acquire) == 0) return false;
  for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
    if (i == self) continue;
    EndpointEntry* e = ring.segment->endpoint(i);
    // Acquire: pairs with Endpoint::Attach's release of `role` (which follows its reset of
    // `finished`).
    if (e->role.load(std::memory_order_acquire) != static_cast<std::uint32_t>(Role::kProducer)) {
      continue;
    }
    // [F3] seq_cst: pairs with [F1] of a producer finishing at the same time.
    if (e->finished.load(std::memory_order_seq_cst) != 0) continue;
    if (ring.segment->EndpointAlive(i)) return false;  // a live producer still sends
  }
  return true;
}

struct MpmcProducerState {
  std::unique_ptr<Endpoint> endpoint;
  SlotRing ring;
  EndpointEntry* self;
  bool claimed = false;
  std::uint64_t ticket = 0;  // the outstanding claim
  std::size_t claim_size = 0;
  bool announced = false;  // self->claim_ticket may hold a ticket we do not own
  bool finished = false;   // finish() was called: this producer sends nothing more

  explicit MpmcProducerState(std::unique_ptr<Endpoint> ep)
      : endpoint(std::move(ep)), ring(*endpoint), self(endpoint->entry()) {
    PrefaultDataArea(ring.data, ring.segment->geometry().data_size, /*for_writing=*/true);
    // A dead producer's claim left in this entry: clearing it lets consumers skip that ticket
    // (nobody live claims it). Release: pairs with the acquire in the consumers' scan [X1].
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

  // TryClaimFast: TryClaim's common case — open, no claim outstanding, the slot at
  // write_position free and our CAS [P3] winning it — with no call on the way, so claim() saves
  // no callee-saved registers (lib/spsc.cc's TryClaimFast says why). It returns kWouldBlock
  // before [P3] for anything else, and after a lost CAS with the announcement [P2] left for
  // TryClaim, which the caller runs next, to replace or clear.
  [[gnu::always_inline]] Claim TryClaimFast(std::size_t size) {
    // Acquire: as in TryClaim.
    if (finished || claimed || size > ring.max_frame ||
        ring.control->closed.load(std::memory_order_acquire) != kOpen) {
      return {Result::kWouldBlock, {}, 0};
    }
    // Relaxed: only a hint; the CAS [P3] decides.
    std::uint64_t pos = ring.control->write_position.load(std::memory_order_relaxed);
    // [P1] acquire, as in TryClaim.
    if (ring.slot(pos)->turn.load(std::memory_order_acquire) != pos) {
      return {Result::kWouldBlock, {}, 0};
    }
    // [P2] and [P3] as in TryClaim.
    self->claim_ticket.store(pos, std::memory_order_relaxed);
    announced = true;
    if (!ring.control->write_position.compare_exchange_strong(
            pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      return {Result::kWouldBlock, {}, 0};
    }
    return Won(pos, size);
  }

  // Won records ticket `pos`, just won by our CAS [P3], as the outstanding claim and returns it —
  // unless the stream ended meanwhile ([P4] seq_cst: see [E2]): a claim that lands after the end
  // is given up.
  [[gnu::always_inline]] Claim Won(std::uint64_t pos, std::size_t size) {
    claimed = true;
    ticket = pos;
    claim_size = size;
    announced = false;
    if (ring.control->closed.load(std::memory_order_seq_cst) != kOpen) {
      AbortLate();
      return {Result::kClosed, {}, 0};
    }
    return {Result::kOk, std::span<std::byte>(ring.payload(pos), size), pos};
  }

  // AbortLate is Abort out of line and returning nothing: a Claim returned from a call in Won was
  // merged with the fast path's result on the stack and reloaded 16 bytes at a time — a
  // store-forwarding stall on every claim.
  [[gnu::noinline]] void AbortLate() { Abort(); }

  [[gnu::always_inline]] Claim TryClaim(std::size_t size) {
    // Acquire: pairs with [P8]; a claim racing the end is caught by [P4] below.
    if (finished || ring.control->closed.load(std::memory_order_acquire) != kOpen) {
      // An announcement TryClaimFast left after a lost CAS must not outlive this call: a stale
      // claim on a ticket would keep consumers from abandoning it if its owner died (see [X1]).
      Unannounce();
      return {Result::kClosed, {}, 0};
    }
    if (size > ring.max_frame) {
      Unannounce();
      return {Result::kTooLarge, {}, 0};
    }
    if (claimed) Abort();  // a second claim replaces an uncommitted one
    // Relaxed: only a hint; the CAS [P3] decides.
    std::uint64_t pos = ring.control->write_position.load(std::memory_order_relaxed);
    for (int retry = 0; retry < kMaxRetries; ++retry) {
      MpmcSlotHeader* slot = ring.slot(pos);
      // [P1] acquire: pairs with the release of the slot's previous ticket [C5]/[R7].
      const std::uint64_t turn = slot->turn.load(std::memory_order_acquire);
      if (turn == pos) {
        // [P2] relaxed: published by the release half of [P3], read after [X1].
        self->claim_ticket.store(pos, std::memory_order_relaxed);
        announced = true;
        // [P3] seq_cst: release for [P2] (pairs with [X1]); seq_cst for the end race [E2].
        if (ring.control->write_position.compare_exchange_strong(
                pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
          return Won(pos, size);  // [P4] there
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
    // [P5] release: publishes the header and payload; pairs with [C2]. Fails only if the slot was
    // declared abandoned [X2] (this endpoint was taken for dead).
    const bool committed = slot->turn.compare_exchange_strong(
        expected, ticket + 1, std::memory_order_release, std::memory_order_relaxed);
    // [P6] release, after [P5]: pairs with the acquire in the consumers' scan [X1].
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
    // Release, after [P7]: as [P6].
    self->claim_ticket.store(kNoTicket, std::memory_order_release);
    endpoint->Notify(ring.control->data_ready, INT_MAX);
  }

  void Close() {
    Abort();
    // [P8] (in PublishClose) seq_cst: pairs with [P4] and [E1]; wakes every sleeper.
    PublishClose(*ring.control, kClosedByClose);
  }

  void Finish() {
    if (finished) return;
    Abort();
    finished = true;
    // [F1] seq_cst: pairs with [F3] of the other producers and of consumers.
    self->finished.store(1, std::memory_order_seq_cst);
    // [F2] seq_cst (release for the consumers' acquire in [F3]).
    ring.control->finishing.store(1, std::memory_order_seq_cst);
    if (ProducersDone(ring, endpoint->index())) {
      PublishClose(*ring.control, kClosedByFinish);
    } else {
      // Consumers waiting for the end re-check the producers when woken.
      endpoint->Notify(ring.control->data_ready, INT_MAX);
    }
  }
};

// ---- MpmcConsumerState: the data path (recovery is in lib/mpmc_recovery.cc) ----

MpmcConsumerState::MpmcConsumerState(std::unique_ptr<Endpoint> ep, const EndpointOptions& options)
    : endpoint(std::move(ep)),
      ring(*endpoint),
      self(endpoint->entry()),
      self_index(endpoint->index()),
      stall(kStallPolls, kStallInterval, options) {
  PrefaultDataArea(ring.data, ring.segment->geometry().data_size, /*for_writing=*/false);
  // A dead producer's claim left in this entry: clear it so consumers skip that ticket.
  self->claim_ticket.store(kNoTicket, std::memory_order_release);
  // A dead consumer's frame left in this entry: adopt it (redelivery) or, if it is not ours to
  // take, forget the record. Attach may wait (a bounded second) for the recovery lock.
  const std::uint64_t inherited = endpoint->previous().held_ticket;
  if (inherited != kNoTicket && Rescue(inherited, /*wait_for_lock=*/true) != Result::kOk) {
    self->held_ticket.store(kNoTicket, std::memory_order_release);
  }
}

void MpmcConsumerState::FreeSlot(std::uint64_t t) {
  // [C5] release: pairs with [P1] and [E3]; we are done reading the slot.
  ring.slot(t)->turn.store(t + ring.capacity, std::memory_order_release);
  // [C6] release, after [C5]: pairs with [R3]; a rescuer that sees the cleared record also sees
  // the slot released.
  self->held_ticket.store(kNoTicket, std::memory_order_release);
  announced = false;
  endpoint->Notify(ring.control->space_ready, INT_MAX);
  // Relaxed: once the stream ended, other consumers may wait for this very release before they
  // report kClosed. Missing a just-ended stream here costs them one re-check (kHolderRecheck).
  if (ring.control->closed.load(std::memory_order_relaxed) != kOpen) {
    endpoint->Notify(ring.control->data_ready, INT_MAX);
  }
}

inline Frame MpmcConsumerState::TryReadFast() {
  if (holding) return Held();
  // [C1] and [C2] acquire, as in TryRead.
  std::uint64_t read = ring.control->read_position.load(std::memory_order_acquire);
  MpmcSlotHeader* slot = ring.slot(read);
  if (slot->turn.load(std::memory_order_acquire) != read + 1) {
    return {Result::kWouldBlock, false, {}, 0};
  }
  Announce(read);
  // [C4] acq_rel, as in TryRead.
  if (!ring.control->read_position.compare_exchange_strong(
          read, read + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return {Result::kWouldBlock, false, {}, 0};
  }
  return TakeCommitted(read);
}

inline Frame MpmcConsumerState::TakeCommitted(std::uint64_t t) {
  // Ask for the slot's first line for writing now: release() stores its turn [C5] and then
  // Notify's exchange waits for that store, so taking the line from the producer's cache here
  // overlaps the caller's reading of the frame instead of delaying the release.
  __builtin_prefetch(ring.slot(t), 1, 3);
  const Frame f = FrameAt(t);
  if (!f.ok()) {
    FreeSlot(t);
    return {Result::kCorrupted, false, {}, 0};
  }
  return Hold(t, f, /*redelivered=*/false);
}

// TryRead, the fast path: take the committed (or abandoned) ticket at the head, or report that
// there is nothing to take. Every other state of the head slot goes to the recovery unit.
inline Frame MpmcConsumerState::TryRead() {
  if (holding) return Held();
  for (int retry = 0; retry < kMaxRetries; ++retry) {
    // [C1] acquire: pairs with [C4] of other consumers (their announcements).
    std::uint64_t read = ring.control->read_position.load(std::memory_order_acquire);
    // [C2] acquire: pairs with [P5] (frame contents), [X2]/[P7] (abandoned).
    const std::uint64_t turn = ring.slot(read)->turn.load(std::memory_order_acquire);
    if (TakeableTurn(turn, read)) {
      Announce(read);
      // [C4] acq_rel: takes ticket `read`; release publishes [C3].
      if (!ring.control->read_position.compare_exchange_strong(
              read, read + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        continue;  // another consumer took it
      }
      if (turn != read + 1) {  // an abandoned claim: skip it, the ticket is a gap
        FreeSlot(read);
        stall.Reset();
        continue;
      }
      return TakeCommitted(read);
    }
    Unannounce();
    Step out = Step::Retry();
    if (turn == read) {
      // Nothing committed at `read`: the ring is empty, or its producer is slow, stopped or dead.
      // Telling these apart needs write_position, a line every claim writes; recovery loads it
      // only once the stream ended or the stall gate fires, so a spinning consumer does not pull
      // that line away from the producers at every poll.
      // [E1] seq_cst: pairs with [P8] and [P4].
      const bool closed = ring.control->closed.load(std::memory_order_seq_cst) != kOpen;
      const bool due = stall.Due(StallKey(read, Stall::kUncommitted));
      if (!closed && !due) {
        // A capped sleep set for another state (a frame we missed, say) ends here.
        if (recheck_key != kNoTicket && recheck_key != StallKey(read, Stall::kUncommitted)) {
          StopRechecking();
        }
        return {Result::kWouldBlock, false, {}, 0};
      }
      out = WhenUncommitted(read, closed, due);
    } else if ((turn & ~kTurnAbandoned) > read + 1) {
      // Another consumer took ticket `read` (and maybe released it): reload.
      if (ring.control->read_position.load(std::memory_order_acquire) == read) {
        return {Result::kCorrupted, false, {}, 0};  // a slot ahead of both cursors
      }
      continue;
    } else {
      out = WhenPreviousLap(read, turn);
    }
    if (!out.retry) return out.frame;
  }
  Unannounce();
  return {Result::kWouldBlock, false, {}, 0};
}

void MpmcConsumerState::Release() {
  if (!holding) return;
  holding = false;
  endpoint->CountFrame(held_data.size());
  FreeSlot(held_ticket);
}

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

Claim MpmcProducer::try_claim(std::size_t size) {
  Claim c = state_->TryClaimFast(size);
  if (c.result != Result::kWouldBlock) [[likely]]
    return c;
  return internal::PollOutOfLine(
      *state_, [size](auto& s) __attribute__((always_inline)) { return s.TryClaim(size); });
}

Claim MpmcProducer::claim(std::size_t size, absl::Time deadline) {
  Claim c = state_->TryClaimFast(size);
  if (c.result != Result::kWouldBlock) [[likely]]
    return c;
  return internal::WaitOutOfLine<&internal::ControlBlock::space_ready>(
      *state_,
      deadline, [size](auto& s) __attribute__((always_inline)) { return s.TryClaim(size); });
}

Result MpmcProducer::commit() { return state_->Commit(state_->claim_size); }
Result MpmcProducer::commit(std::size_t size) { return state_->Commit(size); }
void MpmcProducer::abort() { state_->Abort(); }

Result MpmcProducer::try_send(std::span<const std::byte> payload) {
  Claim c = try_claim(payload.size());
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
void MpmcProducer::finish() { state_->Finish(); }
ChannelCounters MpmcProducer::counters() const {
  return internal::SumCounters(state_->endpoint->segment());
}
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

Frame MpmcConsumer::try_read() {
  Frame f = state_->TryReadFast();
  if (f.result != Result::kWouldBlock) [[likely]]
    return f;
  return internal::PollOutOfLine(
      *state_, [](auto& s) __attribute__((always_inline)) { return s.TryRead(); });
}

Frame MpmcConsumer::read(absl::Time deadline) {
  Frame f = state_->TryReadFast();
  if (f.result != Result::kWouldBlock) [[likely]]
    return f;
  return internal::WaitOutOfLine<&internal::ControlBlock::data_ready>(
      *state_, deadline, [](auto& s) __attribute__((always_inline)) { return s.TryRead(); });
}

void MpmcConsumer::release() { state_->Release(); }

Received MpmcConsumer::try_receive(std::span<std::byte> buffer) {
  Received r = internal::CopyOut(try_read(), buffer);
  if (r.ok()) state_->Release();
  return r;
}

Received MpmcConsumer::receive(std::span<std::byte> buffer, absl::Time deadline) {
  Received r = internal::CopyOut(read(deadline), buffer);
  if (r.ok()) state_->Release();
  return r;
}

ChannelCounters MpmcConsumer::counters() const {
  return internal::SumCounters(state_->endpoint->segment());
}
std::size_t MpmcConsumer::max_frame() const { return state_->ring.max_frame; }
std::string_view MpmcConsumer::name() const { return state_->endpoint->name(); }

}  // namespace shmring
