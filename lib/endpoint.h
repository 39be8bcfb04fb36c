// endpoint.h — an attached producer or consumer: its segment, its endpoint-table entry, its
// counters, and the spin-then-futex wait protocol shared by both ring kinds.
#ifndef SHMRING_LIB_ENDPOINT_H_
#define SHMRING_LIB_ENDPOINT_H_

#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "futex.h"
#include "layout.h"
#include "segment.h"
#include "shmring/result.h"

namespace shmring::internal {

// CopyOut copies a frame read in place into `buffer` (the copying receive of every ring):
// kTooLarge, with the frame's size, when it does not fit; the frame is not released here.
// Inline: it is on the data path of receive()/try_receive().
inline Received CopyOut(const Frame& f, std::span<std::byte> buffer) {
  if (!f.ok()) return {f.result, 0, 0};
  if (f.data.size() > buffer.size()) {
    return {Result::kTooLarge, f.data.size(), f.sequence, f.redelivered};
  }
  if (!f.data.empty()) std::memcpy(buffer.data(), f.data.data(), f.data.size());
  return {Result::kOk, f.data.size(), f.sequence, f.redelivered};
}

// What an entry held when this endpoint took it over from a dead owner.
struct PreviousOwner {
  Role role = Role::kNone;  // kNone: the entry was free
  std::uint32_t pid = 0;
  std::uint64_t claim_ticket = kNoTicket;
  std::uint64_t held_ticket = kNoTicket;
};

inline Result ResultOf(Result r) { return r; }
inline Result ResultOf(const Claim& c) { return c.result; }
inline Result ResultOf(const Frame& f) { return f.result; }
template <typename R>
R WithResult(Result r) {
  if constexpr (std::is_same_v<R, Result>) {
    return r;
  } else {
    R out;
    out.result = r;
    return out;
  }
}

// The longest single futex sleep. A waker killed between publishing and waking (or a hostile
// peer) delays a sleeper by at most this much; each sleep re-checks the condition.
inline constexpr absl::Duration kMaxSleep = absl::Milliseconds(100);

// WaitMode::kHybrid: the first kPureSpinPolls polls of a wait spin (a pause instruction each);
// every later poll first yields the CPU (sched_yield) and counts as kYieldPolls polls against
// EndpointOptions::spin_iterations. Where processes outnumber CPUs, a spinning waiter would
// otherwise hold the CPU its peer needs to produce what it waits for; where a CPU is free, a
// yield returns at once (a ~0.3 us syscall), so the spin phase lasts about as long as before.
inline constexpr std::uint32_t kPureSpinPolls = 256;
inline constexpr std::uint32_t kYieldPolls = 32;

// SumCounters: a channel's statistics, summed over its retired counters and every endpoint
// entry, split by role. Relaxed loads: counters are statistics.
ChannelCounters SumCounters(const Segment& segment);

class Endpoint {
 public:
  // Attach opens `name`, checks its kind, and takes an entry of the endpoint table:
  // SPSC: entry 0 (producer) or 1 (consumer); MPMC: any entry whose owner is gone.
  static absl::StatusOr<std::unique_ptr<Endpoint>> Attach(std::string_view name, Kind kind,
                                                          Role role,
                                                          const EndpointOptions& options);
  ~Endpoint();  // detaches: folds the counters into the segment's, frees the entry

  Segment& segment() const { return *segment_; }
  ControlBlock* control() const { return control_; }
  EndpointEntry* entry() const { return entry_; }
  std::uint32_t index() const { return index_; }
  const PreviousOwner& previous() const { return previous_; }
  const std::string& name() const { return segment_->name(); }

  // Counters, written by this endpoint only. Frame counts: relaxed stores of a local copy, no
  // read-modify-write on the data path. Count (rare events: waits, wake-ups, abandonment,
  // takeovers): a relaxed fetch_add, whose cost does not matter there.
  // CountFrameLater counts a frame locally and FlushFrameCounts stores the counts: SPSC and
  // broadcast endpoints flush at each publication of their position (and at detach), so a
  // deferred batch costs two shared stores, not two per frame, and the segment's counters cover
  // what the peers can see. CountFrame (MPMC, which publishes every frame) does both.
  void CountFrameLater(std::uint64_t bytes) {
    ++frames_;
    bytes_ += bytes;
  }
  void FlushFrameCounts() {
    entry_->counters.frames.store(frames_, std::memory_order_relaxed);
    entry_->counters.bytes.store(bytes_, std::memory_order_relaxed);
  }
  void CountFrame(std::uint64_t bytes) {
    CountFrameLater(bytes);
    FlushFrameCounts();
  }
  void Count(AtomicU64 Counters::*counter, std::uint64_t n = 1) {
    (entry_->counters.*counter).fetch_add(n, std::memory_order_relaxed);
  }

  // RecheckWithin caps the futex sleeps of this endpoint's waits at `d` until ClearRecheck: the
  // poll found a state only a peer's death can change, and a death wakes nobody.
  void RecheckWithin(absl::Duration d) { recheck_ = d; }
  void ClearRecheck() { recheck_ = kMaxSleep; }

  // Wait polls `poll` (a callable returning Result, Claim or Frame) until it returns something
  // other than kWouldBlock, spinning and/or sleeping on `wake` per the wait mode, until
  // `deadline` (then kTimeout).
  template <typename Poll>
  auto Wait(WakeWord& wake, absl::Time deadline, Poll&& poll) -> decltype(poll());

  // Notify: call after publishing (a frame or free room). Wakes the sleepers on `wake`, if any.
  // Cost when nobody sleeps: one atomic exchange on a line that only wakers write while the
  // peer is awake (as expensive as a full fence, which the Dekker handshake needs anyway).
  void Notify(WakeWord& wake, int count) {
    // [N1] acq_rel RMW; pairs with the waiter's RMW [W1] in WaitSlow. RMWs on `waiting` are totally
    // ordered: if ours comes first, [W1] reads our 0 and synchronises with us, so the waiter's
    // re-check sees what we published; if [W1] comes first, we read its 1 and wake it. Clearing
    // the flag here also bounds what a waiter that died asleep costs us: one wake-up.
    if (wake.waiting.exchange(0, std::memory_order_acq_rel) != 0) WakeSlow(wake, count);
  }

 private:
  Endpoint() = default;
  void WakeSlow(WakeWord& wake, int count);
  // WaitSlow: Wait after a first poll found nothing; leaves the result in `r` (Wait's return slot).
  // Out of line, so a poll that succeeds at once does not pay the spin loop's stack frame.
  template <typename Poll, typename R>
  [[gnu::noinline]] void WaitSlow(WakeWord& wake, absl::Time deadline, Poll& poll, R& r);

  std::unique_ptr<Segment> segment_;
  ControlBlock* control_ = nullptr;
  EndpointEntry* entry_ = nullptr;
  std::uint32_t index_ = 0;
  Role role_ = Role::kNone;
  PreviousOwner previous_;
  WaitMode mode_ = WaitMode::kHybrid;
  std::uint32_t spin_iterations_ = 0;
  absl::Duration recheck_ = kMaxSleep;
  std::uint64_t frames_ = 0;
  std::uint64_t bytes_ = 0;
};

// Every return statement returns `r`, so `r` is the caller's return slot (named return value
// optimisation) and the first poll() builds its result there directly (WaitSlow's later polls
// assign through the reference). With a second object to return, the
// result (a 32-byte Frame or Claim) was copied out with 16-byte loads over poll()'s narrower
// stores — a store-forwarding stall on every read() and claim() that found a frame or room at
// once, measured at about half of BroadcastSubscriber::read's time.
template <typename Poll>
auto Endpoint::Wait(WakeWord& wake, absl::Time deadline, Poll&& poll) -> decltype(poll()) {
  using R = decltype(poll());
  R r = poll();
  if (ResultOf(r) != Result::kWouldBlock) return r;
  WaitSlow(wake, deadline, poll, r);
  return r;
}

// The paths of the rings' claim()/try_claim()/read()/try_read() that are not the common case:
// each of those first runs its ring's inlined TryClaimFast/TryReadFast, which makes no call (so
// the public function saves no callee-saved registers, see lib/spsc.cc), and only otherwise
// calls one of these. Out of line, so neither the full poll nor the wait loop is inlined there.
// PollOutOfLine polls once; WaitOutOfLine waits on the wake word kWake as Endpoint::Wait does.
// `poll` takes the ring's state (SpscProducerState, MpmcConsumerState, ...), so the slow call
// passes no more than the state and the poll's own arguments.
template <typename State, typename Poll>
[[gnu::noinline]] auto PollOutOfLine(State& state, Poll poll) -> decltype(poll(state)) {
  return poll(state);
}
template <WakeWord ControlBlock::*kWake, typename State, typename Poll>
[[gnu::noinline]] auto WaitOutOfLine(State& state, absl::Time deadline, Poll poll)
    -> decltype(poll(state)) {
  return state.endpoint->Wait(
      state.ring.control->*kWake,
      deadline, [&]() __attribute__((always_inline)) { return poll(state); });
}

template <typename Poll, typename R>
void Endpoint::WaitSlow(WakeWord& wake, absl::Time deadline, Poll& poll, R& r) {
  if (mode_ != WaitMode::kBlock) {
    const bool hybrid = mode_ == WaitMode::kHybrid;
    std::uint64_t spent = 0;  // polls, a yielding one counting as kYieldPolls
    for (std::uint32_t i = 1;; ++i) {
      if (hybrid && i > kPureSpinPolls) {
        sched_yield();
        spent += kYieldPolls;
      } else {
        CpuRelax();
        ++spent;
      }
      r = poll();
      if (ResultOf(r) != Result::kWouldBlock) return;
      // Reading the clock costs ~20 ns; do it every 64 polls.
      if ((i & 63) == 0 && WallNow() >= deadline) {
        r = WithResult<R>(Result::kTimeout);
        return;
      }
      if (hybrid && spent >= spin_iterations_) break;
    }
  }
  for (;;) {
    // Acquire: pairs with the waker's release fetch_add in WakeSlow. Loading the word before
    // announcing ourselves means a wake that happens after the load makes FUTEX_WAIT return.
    const std::uint32_t seen = wake.word.load(std::memory_order_acquire);
    // [W1] acq_rel RMW: pairs with [N1] in Notify (see there): the re-check below sees the
    // peer's publication, or the peer sees waiting == 1 and wakes us. (An RMW rather than a
    // store + seq_cst fence: same cost on x86, and ThreadSanitizer understands it.)
    wake.waiting.exchange(1, std::memory_order_acq_rel);
    r = poll();
    if (ResultOf(r) != Result::kWouldBlock) return;
    const absl::Time now = WallNow();
    if (now >= deadline) {
      r = WithResult<R>(Result::kTimeout);
      return;
    }
    entry_->sleeping.store(1, std::memory_order_relaxed);  // informational (shm-inspect)
    Count(&Counters::waits);
    FutexWait(&wake.word, seen, std::min(deadline - now, recheck_));
    entry_->sleeping.store(0, std::memory_order_relaxed);
    // Poll before announcing ourselves again: a waker cleared `waiting` when it woke us, and
    // setting it again first would leave it set after we return, costing the peer one futex
    // syscall on its next publication although nobody sleeps.
    r = poll();
    if (ResultOf(r) != Result::kWouldBlock) return;
  }
}

}  // namespace shmring::internal

#endif  // SHMRING_LIB_ENDPOINT_H_
