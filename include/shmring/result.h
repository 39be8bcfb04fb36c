// result.h — what the data-path calls return: a small enum and, for zero-copy calls, a span.
//
// The data path (claim, commit, read, release, send, receive and their try_ forms) never throws,
// never allocates and never returns absl::Status: a Result says what happened, in one byte.
#ifndef SHMRING_RESULT_H_
#define SHMRING_RESULT_H_

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "shmring/endpoint_options.h"  // EndpointOptions, WaitMode (were declared here)

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
  kLapped = 7,      // broadcast subscriber: the publisher overwrote frames this subscriber had
                    // not read (overwrite policy, or evicted under the block policy); the exact
                    // count is reported (Received::missed, BroadcastSubscriber::last_missed())
                    // and reading continues at the oldest frame still held
};

// ToString returns the enumerator's name without the leading 'k', e.g. "WouldBlock".
std::string_view ToString(Result result);

// ToStatus turns a Result into an absl::Status for code that propagates errors as Status: kOk ->
// OK, kWouldBlock -> Unavailable, kTimeout -> DeadlineExceeded, kClosed -> OutOfRange (end of
// stream), kTooLarge -> InvalidArgument, kCorrupted -> DataLoss, kAbandoned -> Aborted,
// kLapped -> DataLoss (frames were skipped; the message says "Lapped"). The
// message is "shmring: <ToString(result)>". Allocates only for a non-OK result.
absl::Status ToStatus(Result result);

// Results print as their ToString name: std::cout << r, and with an Abseil that supports
// AbslStringify (20230125 and later) absl::StrCat(r) and absl::StrFormat("%v", r).
std::ostream& operator<<(std::ostream& os, Result result);
template <typename Sink>
void AbslStringify(Sink& sink, Result result) {
  const std::string_view name = ToString(result);
  sink.Append(absl::string_view(name.data(), name.size()));
}

// DeadlineAfter returns now + `timeout` as a deadline for the blocking calls
// (absl::InfiniteDuration() gives absl::InfiniteFuture()). The Duration overloads of claim, send,
// read and receive use it. It reads CLOCK_REALTIME directly (~25 ns, no absl::Now() slow path).
absl::Time DeadlineAfter(absl::Duration timeout);

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
// Broadcast, with kLapped: `sequence` is the first frame this subscriber missed; how many it
// missed is BroadcastSubscriber::last_missed() (the Frame stays 32 bytes; see below).
// (`redelivered` sits in the padding after `result`: a Frame stays 32 bytes, which the data
// path's latency depends on — 40 bytes cost ~20 ns per SPSC round trip.)
struct Frame {
  Result result = Result::kWouldBlock;
  bool redelivered = false;
  std::span<const std::byte> data;
  std::uint64_t sequence = 0;
  bool ok() const { return result == Result::kOk; }
};
static_assert(sizeof(Frame) == 32);

// Received: the outcome of a copying receive: how many bytes were written to the buffer.
struct Received {
  Result result = Result::kWouldBlock;
  std::size_t size = 0;
  std::uint64_t sequence = 0;
  bool redelivered = false;  // as Frame::redelivered
  // Broadcast, with kLapped: exactly how many frames this subscriber skipped (sequence numbers
  // `sequence` .. `sequence + missed - 1`); the next receive returns frame `sequence + missed`
  // (or a later lap). 0 otherwise.
  std::uint64_t missed = 0;
  bool ok() const { return result == Result::kOk; }
};

}  // namespace shmring

#endif  // SHMRING_RESULT_H_
