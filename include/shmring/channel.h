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

namespace shmring {

// Kind: the ring algorithm of a channel, fixed at creation.
enum class Kind : std::uint32_t {
  kSpsc = 1,  // one producer, one consumer, variable-length frames in a byte ring
  kMpmc = 2,  // many producers, competing consumers, fixed-size slots
};

// ChannelOptions: the geometry and permissions of a new channel.
struct ChannelOptions {
  Kind kind = Kind::kSpsc;
  // SPSC: bytes in the ring; MPMC: number of slots. Must be a power of two.
  // SPSC: at least 4 KiB; MPMC: at least 2 slots.
  std::uint64_t capacity = std::uint64_t{1} << 20;
  // Largest payload one frame may carry. 0 picks the largest allowed:
  // SPSC: capacity / 2 - 16 (a frame must fit twice so it never wraps); MPMC: 1008 bytes.
  std::uint32_t max_frame = 0;
  // MPMC: how many producers and consumers may be attached at once (1..4096). SPSC: ignored (2).
  std::uint32_t max_endpoints = 64;
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
  std::uint64_t frames = 0;       // committed (producers) / released (consumers)
  std::uint64_t bytes = 0;        // payload bytes of those frames
  std::uint64_t wakeups = 0;      // FUTEX_WAKE calls issued
  std::uint64_t waits = 0;        // futex sleeps (ring empty or full, or end-of-stream pending)
  std::uint64_t abandoned = 0;    // MPMC: claims skipped as a gap (dead producers, aborts)
  std::uint64_t takeovers = 0;    // endpoint entries or roles taken over from a dead process
  std::uint64_t redelivered = 0;  // MPMC: frames handed out again after a consumer died
};
// ChannelCounters: a channel's statistics by role. Counters are statistics written with relaxed
// stores (docs/failure-model.md, "Counters"); sequence numbers are the authority on delivery.
struct ChannelCounters {
  RoleCounters producers;
  RoleCounters consumers;
};

// ReadChannelCounters maps `name` read-only and sums its counters (also what an endpoint's
// counters() returns, without the open). Any process with read access may call it; it costs an
// open, an mmap and a pass over the endpoint table. Errors: as Attach (NotFound,
// InvalidArgument, PermissionDenied, FailedPrecondition, DataLoss).
absl::StatusOr<ChannelCounters> ReadChannelCounters(std::string_view name);

// CanonicalName returns `name` with exactly one leading '/' if it is a valid channel name:
// 1..200 bytes of [A-Za-z0-9._-] after the slash, not "." or "..". Otherwise InvalidArgument.
absl::Status ValidateName(std::string_view name);
std::string CanonicalName(std::string_view name);

}  // namespace shmring

#endif  // SHMRING_CHANNEL_H_
