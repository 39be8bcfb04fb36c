// result.h — what the data-path calls return: a small enum and, for zero-copy calls, a span.
//
// The data path (claim, commit, read, release, send, receive and their try_ forms) never throws,
// never allocates and never returns absl::Status: a Result says what happened, in one byte.
#ifndef SHMRING_RESULT_H_
#define SHMRING_RESULT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "absl/time/time.h"

namespace shmring {

// Result: the outcome of a data-path call.
enum class Result : std::uint8_t {
  kOk = 0,          // done
  kWouldBlock = 1,  // try_ form: ring full (producer) or empty (consumer); nothing happened
  kTimeout = 2,     // the deadline passed first; nothing happened
  kClosed = 3,      // consumer: channel closed and drained (end of stream);
                    // producer: the channel is closed, nothing more may be sent
  kTooLarge = 4,    // producer: frame larger than max_frame(); consumer: buffer too small
                    // for the next frame (it stays unread)
  kCorrupted = 5,   // the segment holds something no correct peer writes (index or length out
                    // of bounds); nothing was read or written
  kAbandoned = 6,   // MPMC producer: the claim was declared abandoned (this endpoint was taken
                    // for dead); the frame was not published
};

// ToString returns the enumerator's name without the leading 'k', e.g. "WouldBlock".
std::string_view ToString(Result result);

// Claim: a writable span inside the ring, handed out by claim()/try_claim(). Valid until the
// next commit()/abort on the same producer. `sequence` is the number the frame will carry.
struct Claim {
  Result result = Result::kWouldBlock;
  std::span<std::byte> data;
  std::uint64_t sequence = 0;
  bool ok() const { return result == Result::kOk; }
};

// Frame: a committed frame read in place by read()/try_read(). Valid until release().
// `redelivered` is true when this frame may have been handed out before: a consumer that read it
// died (or detached) without releasing it. Whatever that consumer did with it may have happened
// (a worker should make such side effects idempotent, or deduplicate by `sequence`).
struct Frame {
  Result result = Result::kWouldBlock;
  std::span<const std::byte> data;
  std::uint64_t sequence = 0;
  bool redelivered = false;
  bool ok() const { return result == Result::kOk; }
};

// Received: the outcome of a copying receive: how many bytes were written to the buffer.
struct Received {
  Result result = Result::kWouldBlock;
  std::size_t size = 0;
  std::uint64_t sequence = 0;
  bool redelivered = false;  // as Frame::redelivered
  bool ok() const { return result == Result::kOk; }
};

// WaitMode: how a blocking call waits for the other side.
enum class WaitMode : std::uint8_t {
  kSpin,    // busy-poll until the deadline: lowest latency, burns a core
  kBlock,   // sleep on the futex at once: no CPU while idle, a wake-up costs a syscall
  kHybrid,  // spin briefly, then yield the CPU between polls, then sleep (default; see
            // EndpointOptions::spin_iterations)
};

// EndpointOptions: how an endpoint attaches and waits.
struct EndpointOptions {
  WaitMode wait = WaitMode::kHybrid;
  // How long a hybrid wait polls before it sleeps, in polls: the first 256 polls spin (a load
  // and a pause instruction each, a few ns to ~40 ns depending on the CPU); each later poll
  // first yields the CPU to other runnable processes (sched_yield) and counts as 32 polls. The
  // default spins ~10 us, then yields ~600 times (a few hundred us on an idle machine).
  std::uint32_t spin_iterations = 20000;
  // How long Attach waits for a channel that is still being initialised by its creator.
  absl::Duration open_timeout = absl::Seconds(5);
  // Accept a channel whose mode has group/other write bits, or which another user owns.
  // Off by default: such a channel can be written by others and is refused.
  bool allow_shared_mode = false;
};

}  // namespace shmring

#endif  // SHMRING_RESULT_H_
