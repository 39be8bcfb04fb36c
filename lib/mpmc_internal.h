// mpmc_internal.h — the MPMC endpoint states, shared by the data path (lib/mpmc.cc: claim,
// commit, the read fast path, release) and the recovery unit (lib/mpmc_recovery.cc: abandonment
// of dead producers' claims, rescue of dead consumers' frames, sweeps, end-of-stream). The
// ordering protocol and its labels ([P1]..., [C1]..., [E1]..., [X1]..., [R1]...) are described
// at the top of lib/mpmc.cc.
#ifndef SHMRING_LIB_MPMC_INTERNAL_H_
#define SHMRING_LIB_MPMC_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <memory>

#include "endpoint.h"
#include "shmring/mpmc.h"

namespace shmring::internal {

// Bound on the retries of one try_ call (each retry means another endpoint made progress).
inline constexpr int kMaxRetries = 1024;
// Stalled polls before the expensive checks run (after spinning), and their rescan intervals.
inline constexpr std::uint32_t kStallPolls = 64;
inline constexpr absl::Duration kStallInterval = absl::Milliseconds(1);
inline constexpr absl::Duration kSweepInterval = absl::Milliseconds(10);
// How long a waiter sleeps at most while it waits for something only a death can change without
// waking it: a frame another consumer holds, or a producer that has not finished yet once some
// producer finished (a holder's release and a producer's finish() do wake it).
inline constexpr absl::Duration kHolderRecheck = absl::Milliseconds(2);

// The stalled states a consumer tells apart. Each stall is keyed by (ticket, kind), so that the
// StallGate restarts its count when the consumer moves on to another ticket or another state.
enum class Stall : std::uint64_t {
  kUncommitted = 0,  // ticket `read` is claimed (or not yet claimed) but not committed
  kPreviousLap = 1,  // slot `read` still holds ticket read - capacity (read, not released)
  kKinds = 2,
};
inline constexpr std::uint64_t StallKey(std::uint64_t read, Stall stall) {
  return read * static_cast<std::uint64_t>(Stall::kKinds) + static_cast<std::uint64_t>(stall);
}

// Turn values of the slot of ticket t (lib/layout.h).
// TakeableTurn: ticket t is committed or abandoned, and nobody dequeued it yet (if t is the
// read position) — or somebody dequeued it and has not released it (if t is behind it).
inline bool TakeableTurn(std::uint64_t turn, std::uint64_t t) {
  return turn == t + 1 || turn == ((t + 1) | kTurnAbandoned);
}
// ReleasedTurn: the slot of ticket t was released (it now belongs to a later lap).
inline bool ReleasedTurn(std::uint64_t turn, std::uint64_t t, std::uint64_t capacity) {
  return (turn & ~kTurnAbandoned) >= t + capacity;
}

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

// ProducersDone: some producer called finish() and no other producer is attached, alive and
// unfinished (entry `self` is skipped). [F3]: see lib/mpmc.cc.
bool ProducersDone(const SlotRing& ring, std::uint32_t self);

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

struct MpmcConsumerState {
  std::unique_ptr<Endpoint> endpoint;
  SlotRing ring;
  EndpointEntry* self;
  std::uint32_t self_index;
  // The frame handed out by the last successful read, until release().
  bool holding = false;
  std::uint64_t held_ticket = 0;  // also the held frame's sequence number
  // The held frame field by field, not as a Frame: assigning and returning a whole Frame made
  // the compiler assemble it with narrow stores and reload it 16 bytes at a time, which stalls on
  // store forwarding (as in lib/spsc.cc). Held() rebuilds it for a read that finds it still held;
  // Hold() returns the frame it takes from its arguments (reloading what it just stored stalls).
  std::span<const std::byte> held_data;
  bool held_redelivered = false;
  bool announced = false;  // self->held_ticket may hold a ticket we do not hold
  StallGate stall;
  absl::Time last_sweep = absl::InfinitePast();  // of the table, for dead consumers' frames
  // End-of-stream: every ticket below this one was seen released (a released slot stays
  // released: its turn only grows), so the scan for held frames starts here.
  std::uint64_t released_below = 0;
  // The stalled state (StallKey) for which this consumer's sleeps are capped at kHolderRecheck;
  // kNoTicket: none. Cleared by the next frame, or when an empty ring is seen in another state.
  std::uint64_t recheck_key = kNoTicket;

  MpmcConsumerState(std::unique_ptr<Endpoint> ep, const EndpointOptions& options);
  ~MpmcConsumerState() = default;  // an unreleased frame stays in its slot, orphaned

  // ---- data path (lib/mpmc.cc) ----
  // Always inlined into read()/try_read()/try_receive() (all in lib/mpmc.cc): returned through
  // memory, the frame was reloaded 16 bytes at a time over narrower stores (a store-forwarding
  // stall that took most of read()'s time).
  [[gnu::always_inline]] inline Frame TryRead();
  // TryReadFast: TryRead's common case — a committed frame at the head, taken by our CAS [C4] —
  // with no call on the way (see MpmcProducerState::TryClaimFast). It returns kWouldBlock before
  // [C4] for anything else, or after a lost CAS with the announcement [C3] left for TryRead,
  // which the caller runs next, to replace or clear.
  [[gnu::always_inline]] inline Frame TryReadFast();
  // TakeCommitted holds the committed frame of ticket t, just taken at [C4] (kCorrupted, the slot
  // freed, if its header is impossible). Makes no call on the way to a frame.
  [[gnu::always_inline]] inline Frame TakeCommitted(std::uint64_t t);
  void Release();
  Frame Held() const { return {Result::kOk, held_redelivered, held_data, held_ticket}; }
  void Announce(std::uint64_t t) {
    // [C3] relaxed: published by the release half of [C4].
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
    if (sequence != t || length > ring.max_frame) return {Result::kCorrupted, false, {}, 0};
    return {Result::kOk, false, std::span<const std::byte>(ring.payload(t), length), t};
  }
  // FreeSlot releases ticket t's slot for ticket t + capacity ([C5], [C6]) and wakes sleepers.
  void FreeSlot(std::uint64_t t);
  // Hold makes f (ticket t's frame, from FrameAt) the held frame and returns it (from the
  // arguments, not Held(): a reload of held_data just stored stalled, see lib/spsc.cc).
  Frame Hold(std::uint64_t t, Frame f, bool redelivered) {
    holding = true;
    held_ticket = t;  // == f.sequence (FrameAt)
    held_data = f.data;
    held_redelivered = redelivered;
    announced = false;
    stall.Reset();
    if (recheck_key != kNoTicket) StopRechecking();
    return {Result::kOk, redelivered, f.data, t};
  }
  // RecheckSoon: the consumer waits in state `key` for something only a death may bring about
  // (nobody wakes it then): cap its sleeps at kHolderRecheck while it stays in that state.
  void RecheckSoon(std::uint64_t key) {
    recheck_key = key;
    endpoint->RecheckWithin(kHolderRecheck);
  }
  void StopRechecking() {
    recheck_key = kNoTicket;
    endpoint->ClearRecheck();
  }

  // ---- recovery (lib/mpmc_recovery.cc) ----
  // Step: what a recovery function tells TryRead — return `frame`, or (retry) the state changed:
  // read the head again. A plain struct, not std::optional<Frame>: GCC 12's UBSan reported
  // loads of an uninitialised `engaged` flag through the optional's trivial copy (chaos_test,
  // segment_test under ASan+UBSan).
  struct Step {
    bool retry = false;
    Frame frame;
    Step(const Frame& f) : frame(f) {}  // NOLINT: implicit, so `return frame;` reads naturally
    static Step Retry() {
      Step s(Frame{});
      s.retry = true;
      return s;
    }
  };
  // Each returns the frame or result try_read should return, or Step::Retry().
  // WhenUncommitted: the slot at `read` holds turn == read (nothing committed there).
  Step WhenUncommitted(std::uint64_t read, bool closed, bool due);
  // WhenPreviousLap: the slot at `read` still holds ticket read - capacity.
  Step WhenPreviousLap(std::uint64_t read, std::uint64_t turn);
  // WhenDrained: every ticket below `read` was dequeued and no claim is outstanding.
  // `stall`: the state the head slot was in (for RecheckSoon).
  Step WhenDrained(std::uint64_t read, bool closed, bool due, Stall stall);
  // EndOfStream: closed ([E1]) and drained ([E2]) at `read`: kClosed once no frame is held by
  // anyone; a held frame of a dead consumer is rescued first; a live holder's frame means
  // kWouldBlock.
  Step EndOfStream(std::uint64_t read, bool due);
  // AbandonIfOwnerDead skips ticket t (claimed, not committed) if no live endpoint claims it.
  // True if the slot changed state (abandoned now, or committed meanwhile): retry the read.
  bool AbandonIfOwnerDead(std::uint64_t t);
  // Rescue takes over ticket t if its slot is orphaned (read, not released, no live holder):
  // kOk with the frame held (a redelivery), kCorrupted, or kWouldBlock (nothing to take, or the
  // recovery lock is busy; an abandoned orphan was released). Waits for the lock only if
  // `wait_for_lock` (Attach does; a try_ call never waits).
  Result Rescue(std::uint64_t t, bool wait_for_lock);
  // LiveHolderOf: some live consumer other than us records ticket t as held (or is about to).
  bool LiveHolderOf(std::uint64_t t) const;
  // SweepDeadHolders: rescue the frames of dead consumers recorded in the endpoint table.
  Frame SweepDeadHolders(std::uint64_t read);
};

}  // namespace shmring::internal

#endif  // SHMRING_LIB_MPMC_INTERNAL_H_
