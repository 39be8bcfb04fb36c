// mpmc_recovery.cc — what an MPMC consumer does when the head of the ring is not simply a frame
// to take: abandonment of dead producers' claims, rescue of dead consumers' frames, the sweeps
// that find them, and end-of-stream. The protocol, its labels and the worked interleavings of
// the two hardest races are at the top of lib/mpmc.cc; the fast path that calls into this unit is
// MpmcConsumerState::TryRead there.
//
// Nothing here waits: a try_ call that finds the recovery lock busy returns (kWouldBlock) and
// retries at its next poll. Only Attach, which adopts the frame of the dead entry it takes, waits
// (at most a second) for the lock.
#include <algorithm>

#include "mpmc_internal.h"

namespace shmring::internal {
namespace {

constexpr Frame Nothing() { return {Result::kWouldBlock, false, {}, 0}; }
constexpr Frame Corrupted() { return {Result::kCorrupted, false, {}, 0}; }

}  // namespace

MpmcConsumerState::Step MpmcConsumerState::WhenUncommitted(std::uint64_t read, bool closed,
                                                           bool due) {
  // [X1] acquire: pairs with [P3] (a release sequence): the claimer's [P2] is visible.
  // [E2] seq_cst, after [E1] (the caller's load of `closed`).
  const std::uint64_t write = ring.control->write_position.load(std::memory_order_seq_cst);
  if (write < read || write - read > ring.capacity) {
    // `read` may be stale: since we loaded it, ticket `read` may have been committed, consumed
    // and released, and producers may have claimed a lap further. Only an unchanged
    // read_position makes this impossible state a corruption.
    if (ring.control->read_position.load(std::memory_order_acquire) != read) return Step::Retry();
    return Corrupted();
  }
  if (write == read) return WhenDrained(read, closed, due, Stall::kUncommitted);
  // Ticket `read` is claimed, not committed: its producer is slow, stopped, or dead. Only its
  // death (noticed by polling) or its commit (which wakes us) ends this wait.
  RecheckSoon(StallKey(read, Stall::kUncommitted));
  if (due && AbandonIfOwnerDead(read)) return Step::Retry();
  return Nothing();
}

MpmcConsumerState::Step MpmcConsumerState::WhenPreviousLap(std::uint64_t read, std::uint64_t turn) {
  // The slot still holds ticket read - capacity: read but not released (or an abandoned claim
  // being skipped). If producers are stuck behind it, it may be a dead consumer's.
  const std::uint64_t base = turn & ~kTurnAbandoned;
  if (read < ring.capacity || base != read - ring.capacity + 1) {
    // Not a state a current `read` can see (a stale one can): retry later.
    if (ring.control->read_position.load(std::memory_order_acquire) != read) return Step::Retry();
    return Nothing();
  }
  // [E1] seq_cst, then [E2] seq_cst: as in TryRead and WhenUncommitted.
  const bool closed = ring.control->closed.load(std::memory_order_seq_cst) != kOpen;
  const std::uint64_t write = ring.control->write_position.load(std::memory_order_seq_cst);
  if (write != read) return Nothing();  // a stale turn: the slot moved on; poll again
  // Nothing else to read: we wait for the holder of ticket read - capacity.
  RecheckSoon(StallKey(read, Stall::kPreviousLap));
  const bool due = stall.Due(StallKey(read, Stall::kPreviousLap));
  if (closed) return EndOfStream(read, due);  // its scan covers ticket read - capacity
  if (due) {
    const std::uint64_t orphan = read - ring.capacity;
    const Result r = Rescue(orphan, /*wait_for_lock=*/false);
    if (r == Result::kOk) return Held();
    if (r == Result::kCorrupted) return Corrupted();
    if (!TakeableTurn(ring.slot(orphan)->turn.load(std::memory_order_acquire), orphan)) {
      return Step::Retry();  // released meanwhile (by its holder or by us): retry
    }
  }
  return WhenDrained(read, closed, due, Stall::kPreviousLap);
}

MpmcConsumerState::Step MpmcConsumerState::WhenDrained(std::uint64_t read, bool closed, bool due,
                                                       Stall stall) {
  if (closed) return EndOfStream(read, due);
  // Acquire: pairs with [F2].
  if (ring.control->finishing.load(std::memory_order_acquire) != 0) {
    // Some producer finished: the others' deaths end the stream too, and nobody wakes us for
    // that.
    RecheckSoon(StallKey(read, stall));
    if (due && ProducersDone(ring, self_index)) {
      PublishClose(*ring.control, kClosedByFinish);
      return Step::Retry();  // retry: the end is now visible at [E1]
    }
  }
  if (!due) return Nothing();
  const absl::Time now = WallNow();
  if (now - last_sweep >= kSweepInterval) {
    last_sweep = now;
    const Frame f = SweepDeadHolders(read);
    if (f.result != Result::kWouldBlock) return f;
  }
  return Nothing();
}

MpmcConsumerState::Step MpmcConsumerState::EndOfStream(std::uint64_t read, bool due) {
  // Closed ([E1]) and drained ([E2]): read_position cannot pass write_position, so it is `read`
  // now. kClosed only once every ticket of the last lap is released: a frame still held may
  // come back (its holder may die), and then it must reach a live consumer first.
  const std::uint64_t first = read > ring.capacity ? read - ring.capacity : 0;
  std::uint64_t t = released_below > first && released_below <= read ? released_below : first;
  bool prefix = true;  // every ticket before t is released
  bool waiting = false;
  for (; t < read; ++t) {
    MpmcSlotHeader* slot = ring.slot(t);
    // [E3] acquire: pairs with [C5]/[R7] of the holder.
    std::uint64_t turn = slot->turn.load(std::memory_order_acquire);
    if (!ReleasedTurn(turn, t, ring.capacity)) {
      if (!TakeableTurn(turn, t)) return Corrupted();  // no correct peer leaves this below read
      if (!due) {
        waiting = true;
        break;  // the expensive checks wait for the stall gate
      }
      const Result r = Rescue(t, /*wait_for_lock=*/false);
      if (r == Result::kOk) return Held();
      if (r == Result::kCorrupted) return Corrupted();
      turn = slot->turn.load(std::memory_order_acquire);  // [E3] again: Rescue may have freed it
      if (!ReleasedTurn(turn, t, ring.capacity)) {
        waiting = true;  // a live holder (or a busy rescuer): keep scanning for dead ones
        prefix = false;
        continue;
      }
    }
    if (prefix) released_below = t + 1;
  }
  if (waiting) {
    // Closed: the cap lasts until the end (or a frame), whatever the head slot's state.
    RecheckSoon(StallKey(read, Stall::kUncommitted));
    return Nothing();
  }
  return Frame{Result::kClosed, false, {}, 0};
}

bool MpmcConsumerState::AbandonIfOwnerDead(std::uint64_t t) {
  for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
    if (i == self_index) continue;
    // [X1] acquire: pairs with [P6]. The owner's [P2] is visible through the caller's [X1].
    if (ring.segment->endpoint(i)->claim_ticket.load(std::memory_order_acquire) == t &&
        ring.segment->EndpointAlive(i)) {
      return false;  // its owner lives (maybe slow or stopped): never treated as dead
    }
  }
  std::uint64_t expected = t;
  // [X2] acq_rel: races the owner's [P5]; pairs with [C2] of the consumer that skips it.
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

bool MpmcConsumerState::LiveHolderOf(std::uint64_t t) const {
  for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
    if (i == self_index) continue;
    EndpointEntry* e = ring.segment->endpoint(i);
    // [R3] acquire: pairs with [C6] (and, through [C1], with [C4] for the announcement).
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

Result MpmcConsumerState::Rescue(std::uint64_t t, bool wait_for_lock) {
  // Cheap filters first (no lock, no syscall unless the slot is held).
  if (t >= ring.control->read_position.load(std::memory_order_acquire)) {
    return Result::kWouldBlock;
  }
  if (!TakeableTurn(ring.slot(t)->turn.load(std::memory_order_acquire), t) || LiveHolderOf(t)) {
    return Result::kWouldBlock;
  }
  // [R1] the recovery lock. Busy: another consumer rescues right now; a try_ call returns.
  const absl::Time give_up = WallNow() + absl::Seconds(1);
  while (!TryLockByte(ring.segment->fd(), kRecoveryLockOffset)) {
    if (!wait_for_lock || WallNow() >= give_up) return Result::kWouldBlock;
    absl::SleepFor(absl::Microseconds(100));
  }
  // Under the lock nobody else adopts or releases an orphan. The kernel orders the lock
  // holders in time; [R2] makes that order visible to the memory model (and to TSan): an RMW
  // on the slot's turn reads the previous rescuer's [R6]/[R7], so its record [R5] is seen.
  MpmcSlotHeader* slot = ring.slot(t);
  // [R2] acq_rel RMW that changes nothing.
  slot->turn.fetch_add(0, std::memory_order_acq_rel);
  // Re-check in this order (worked interleaving 2 in lib/mpmc.cc): the holders [R3] before the
  // turn [R4], so that a holder's release seen as a cleared record [C6] is also seen in the turn.
  Result result = Result::kWouldBlock;
  bool freed = false;
  if (t < ring.control->read_position.load(std::memory_order_acquire) && !LiveHolderOf(t)) {
    // [R4] acquire: pairs with [C5] of the holder and [R7] of an earlier rescuer.
    const std::uint64_t turn = slot->turn.load(std::memory_order_acquire);
    if (turn == t + 1) {
      // [R5]: the record the next rescuer's [R3] sees; published by [R6].
      self->held_ticket.store(t, std::memory_order_relaxed);
      slot->turn.fetch_add(0, std::memory_order_acq_rel);  // [R6]
      const Frame f = FrameAt(t);
      if (f.ok()) {
        Hold(t, f, /*redelivered=*/true);
        endpoint->Count(&Counters::redelivered);
        result = Result::kOk;
      } else {
        // [R7] release: as [C5].
        slot->turn.store(t + ring.capacity, std::memory_order_release);
        self->held_ticket.store(kNoTicket, std::memory_order_release);
        result = Result::kCorrupted;
        freed = true;
      }
    } else if (turn == ((t + 1) | kTurnAbandoned)) {
      // A dead consumer was skipping this abandoned claim: finish the skip. [R7] as [C5].
      slot->turn.store(t + ring.capacity, std::memory_order_release);
      freed = true;
    }
  }
  UnlockByte(ring.segment->fd(), kRecoveryLockOffset);
  if (freed) {
    endpoint->Notify(ring.control->space_ready, INT_MAX);
    endpoint->Notify(ring.control->data_ready, INT_MAX);  // others may wait for this slot
  }
  return result;
}

Frame MpmcConsumerState::SweepDeadHolders(std::uint64_t read) {
  for (std::uint32_t i = 0; i < ring.max_endpoints; ++i) {
    if (i == self_index) continue;
    EndpointEntry* e = ring.segment->endpoint(i);
    // Acquire: pairs with [C6]/[R5].
    const std::uint64_t t = e->held_ticket.load(std::memory_order_acquire);
    if (t == kNoTicket || t >= read) continue;
    if (!TakeableTurn(ring.slot(t)->turn.load(std::memory_order_acquire), t)) continue;
    const Result r = Rescue(t, /*wait_for_lock=*/false);
    if (r == Result::kOk) return Held();
    if (r == Result::kCorrupted) return Corrupted();
  }
  return Nothing();
}

}  // namespace shmring::internal
