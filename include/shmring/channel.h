// channel.h — create, remove and describe shmring channels (one POSIX shm object each).
//
//   shmring::ChannelOptions options;
//   options.kind = shmring::Kind::kSpsc;
//   options.capacity = 1 << 20;  // 1 MiB byte ring
//   absl::Status status = shmring::CreateChannel("/quotes", options);
//   ...
//   status = shmring::RemoveChannel("/quotes");
//
// Any process may call these functions. They make syscalls and may allocate; none of them is on
// the data path.
#ifndef SHMRING_CHANNEL_H_
#define SHMRING_CHANNEL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shmring/endpoint_options.h"

namespace shmring {

// Kind: the ring algorithm of a channel, fixed at creation.
enum class Kind : std::uint32_t {
  kSpsc = 1,       // one producer, one consumer, variable-length frames in a byte ring
  kMpmc = 2,       // many producers, competing consumers, fixed-size slots
  kBroadcast = 3,  // one publisher, many subscribers each reading every frame (broadcast.h)
};

// OverflowPolicy: what a broadcast publisher does when the ring is full of frames some subscriber
// has not read yet. Fixed at creation.
enum class OverflowPolicy : std::uint32_t {
  // Lossless: the publisher never overwrites a frame a live subscriber has not released; it waits
  // (claim's deadline → kTimeout). A dead subscriber stops counting at once; a live one that holds
  // the publisher blocked for ChannelOptions::evict_after is evicted (detached from the limit):
  // its next read returns kLapped with the exact number of frames it missed.
  kBlock = 0,
  // Lossy: the publisher never waits; it overwrites the oldest frames. A subscriber that was
  // lapped gets kLapped with the exact number of frames it missed. A torn frame is never
  // delivered (broadcast.h, "Validation").
  kOverwrite = 1,
};

// kDefaultEvictAfter: ChannelOptions::evict_after's default. One second is far above what a live
// subscriber that keeps up on average ever holds the publisher (scheduling delays, page faults, a
// GC pause: micro- to milliseconds, even on a loaded machine), so a lossless channel does not lose
// frames to noise; and it is short enough that a stopped (SIGSTOP, debugger), hung or deadlocked
// subscriber stalls every other subscriber for about a second, not forever. Channels that must
// never lose a frame set absl::InfiniteDuration() and accept that one stuck reader stalls all.
inline constexpr absl::Duration kDefaultEvictAfter = absl::Seconds(1);

// ChannelOptions: the geometry and permissions of a new channel.
struct ChannelOptions {
  Kind kind = Kind::kSpsc;
  // SPSC and broadcast: bytes in the ring; MPMC: number of slots. Must be a power of two.
  // SPSC and broadcast: at least 4 KiB; MPMC: at least 2 slots.
  std::uint64_t capacity = std::uint64_t{1} << 20;
  // Largest payload one frame may carry. 0 picks the largest allowed:
  // SPSC and broadcast: capacity / 2 - 16 (a frame must fit twice so it never wraps); MPMC:
  // kDefaultMpmcMaxFrame (992 bytes: with its 32-byte header, a 1 KiB slot).
  std::uint32_t max_frame = 0;
  // MPMC: how many producers and consumers may be attached at once (1..4096). Broadcast: how many
  // subscribers may be attached at once (1..4096; the publisher has an entry of its own on top).
  // Each costs 256 bytes of the segment. SPSC: ignored (2).
  std::uint32_t max_endpoints = 64;
  // Broadcast only (InvalidArgument for another kind unless left at kBlock): the overflow policy.
  OverflowPolicy overflow = OverflowPolicy::kBlock;
  // Broadcast with kBlock: how long a live subscriber may keep the publisher blocked (waiting for
  // it to release) before it is evicted — detached from the publisher's limit so the others go on;
  // it then reads kLapped with the exact count of frames it missed. absl::InfiniteDuration():
  // never evict (strictly lossless; a stopped subscriber then stalls the publisher until it dies).
  // absl::ZeroDuration(): evict whenever the ring is full. Negative: InvalidArgument. Ignored by
  // kOverwrite. See kDefaultEvictAfter for why one second.
  absl::Duration evict_after = kDefaultEvictAfter;
  // Permission bits of the shm object, applied with fchmod (the umask does not decide).
  // Group/other write bits make openers refuse the channel unless they pass
  // EndpointOptions::allow_shared_mode.
  mode_t mode = 0600;
  // If an object of this name exists and every endpoint recorded in it is dead (or it is a
  // shmring segment whose creator died while initialising it), remove it and create anew.
  // A segment with a live endpoint is never touched: CreateChannel returns AlreadyExists.
  bool reclaim_stale = false;
};

// CreateChannel creates the shm object `name` (with or without the leading '/') exclusively
// (O_CREAT|O_EXCL) and initialises it. It attaches no endpoint.
// Errors: InvalidArgument (bad name or geometry), AlreadyExists, PermissionDenied.
absl::Status CreateChannel(std::string_view name, const ChannelOptions& options);

// RemoveChannel unlinks the shm object `name`. Mapped endpoints keep working until they detach;
// the memory is freed when the last one unmaps. Errors: InvalidArgument, NotFound,
// PermissionDenied.
absl::Status RemoveChannel(std::string_view name);

// RoleCounters: statistics of the endpoints of one role, summed over every endpoint that is or
// was attached (those that detached or died are folded in when their entry is reused).
struct RoleCounters {
  std::uint64_t frames = 0;       // committed (producers) / released (consumers); SPSC and
                                  // broadcast: as of the endpoint's last publication
  std::uint64_t bytes = 0;        // payload bytes of those frames
  std::uint64_t wakeups = 0;      // FUTEX_WAKE calls issued
  std::uint64_t waits = 0;        // futex sleeps (ring empty or full, or end-of-stream pending)
  std::uint64_t abandoned = 0;    // MPMC: claims skipped as a gap (dead producers, aborts)
  std::uint64_t takeovers = 0;    // endpoint entries or roles taken over from a dead process
  std::uint64_t redelivered = 0;  // MPMC: frames handed out again after a consumer died
  std::uint64_t missed = 0;       // broadcast subscribers: frames skipped by laps/evictions
  std::uint64_t lapped = 0;       // broadcast subscribers: kLapped results (laps, evictions)
  std::uint64_t evicted = 0;      // broadcast publisher: live subscribers it evicted
};
// ChannelCounters: a channel's statistics by role. Counters are statistics written with relaxed
// stores (docs/failure-model.md, "Counters"); sequence numbers are the authority on delivery.
// (Broadcast: the publisher counts as a producer, subscribers as consumers.)
struct ChannelCounters {
  RoleCounters producers;
  RoleCounters consumers;
};

// ReadChannelCounters maps `name` read-only and sums its counters (also what an endpoint's
// counters() returns, without the open). Any process with read access may call it; it costs an
// open, an mmap and a pass over the endpoint table. Errors: as Attach (NotFound,
// InvalidArgument, PermissionDenied, FailedPrecondition, DataLoss).
absl::StatusOr<ChannelCounters> ReadChannelCounters(std::string_view name);

// CloseChannel marks the channel `name` closed (end-of-stream) from any process, attached or not,
// exactly as a producer's close() does: frames already committed are still delivered, then
// consumers read Result::kClosed; producers' next claim/send returns kClosed; every sleeper is
// woken. Works while a producer is attached (it then sees kClosed). Idempotent. `options`:
// allow_shared_mode and open_timeout (how long to wait for a creator still initialising it).
// Errors: InvalidArgument (bad name), NotFound, PermissionDenied, FailedPrecondition (not a
// shmring segment), DataLoss (corrupted), DeadlineExceeded.
absl::Status CloseChannel(std::string_view name, const EndpointOptions& options = {});

// ChannelKind opens `name` read-only and returns its kind (waiting up to options.open_timeout
// for a creator still initialising it). Errors as CloseChannel.
absl::StatusOr<Kind> ChannelKind(std::string_view name, const EndpointOptions& options = {});

// kDefaultMpmcMaxFrame: the MPMC max_frame that ChannelOptions::max_frame = 0 picks.
inline constexpr std::uint32_t kDefaultMpmcMaxFrame = 992;

// MpmcSlotBytes: the bytes one MPMC slot takes in the segment for `max_frame` payload bytes (its
// header plus the payload, rounded up to 64). An MPMC data area is capacity * MpmcSlotBytes.
std::uint64_t MpmcSlotBytes(std::uint32_t max_frame);

// ValidateName returns OK if `name` is a valid channel name: 1..200 bytes of [A-Za-z0-9._-],
// optionally after one leading '/', not "." or "..". Otherwise InvalidArgument naming the
// offending character.
absl::Status ValidateName(std::string_view name);
// CanonicalName returns a valid `name` with exactly one leading '/' (call ValidateName first).
std::string CanonicalName(std::string_view name);

}  // namespace shmring

#endif  // SHMRING_CHANNEL_H_
