// inspect.h — a read-only decoder that turns the bytes of a shmring segment into a Snapshot:
// everything shm-inspect prints (geometry, cursors, fill, endpoints, waiters, counters, and the
// next unread frames).
//
//   absl::StatusOr<Snapshot> s = InspectChannel("/quotes", {.max_frames = 8});
//   if (s.ok()) std::cout << s->next_write_seq - s->next_read_seq << " frames queued\n";
//
// The decoder never trusts the segment: every byte may have been written by a hostile peer, may
// change while it is read, and the object may shrink while it is read. It copies the header once
// and validates it with ValidateHeader, bounds every cursor, index and length before use, and
// reads through a ByteReader that reports short reads instead of faulting. DecodeSegment is a
// pure function of (bytes, object size, liveness) so a fuzz target can drive it directly.
//
// InspectChannel opens the object O_RDONLY and reads it with pread(2): it never maps it writable,
// never writes, never takes a lock (liveness is tested with F_OFD_GETLK only), never attaches as
// an endpoint and never wakes anyone. Any process may call these functions.
//
// This header is the inspection interface of the tools (shm-inspect, shm-cat gc/rm): besides the
// decoder it brings segment.h's naming helpers (Prefix, RoleName, kShmDirectory, AV/SV) and
// stale.h's gc (CollectIfStale, CheckRemovable, ListShmObjects). Tools include shmring/*.h and
// this header, no other lib/ header; it is internal (not installed, no ABI promise).
#ifndef SHMRING_LIB_INSPECT_H_
#define SHMRING_LIB_INSPECT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "layout.h"
#include "segment.h"
#include "stale.h"

namespace shmring::internal {

// CounterValues: a plain copy of Counters (see layout.h for what each one counts).
struct CounterValues {
  std::uint64_t frames = 0;
  std::uint64_t bytes = 0;
  std::uint64_t wakeups = 0;
  std::uint64_t waits = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t takeovers = 0;
  std::uint64_t redelivered = 0;
  std::uint64_t missed = 0;   // broadcast subscriber: frames skipped by laps/evictions
  std::uint64_t lapped = 0;   // broadcast subscriber: times lapped (overwrite) or evicted (block)
  std::uint64_t evicted = 0;  // broadcast publisher: live subscribers it evicted

  CounterValues& operator+=(const CounterValues& o);
};

// EndpointSnapshot: one entry of the endpoint table that is in use (role set) or locked.
struct EndpointSnapshot {
  std::uint32_t index = 0;
  std::uint32_t role = 0;  // Role; may be any value in a corrupted segment
  std::uint32_t pid = 0;
  bool alive = false;  // some process holds the entry's liveness lock
  std::uint64_t generation = 0;
  std::uint64_t attach_time_ns = 0;
  std::optional<std::uint64_t> claim_ticket;  // MPMC producer: claimed, not committed
  std::optional<std::uint64_t> held_ticket;   // MPMC consumer: read, not released
  bool sleeping = false;                      // owner sleeps on a futex (informational)
  bool finished = false;                      // MPMC producer: it called finish()
  // Broadcast subscriber: its cursor (the position and sequence number of the next frame it
  // reads). Lag and whether it was lapped are Snapshot::LagOf / Snapshot::Behind.
  std::optional<std::uint64_t> cursor_position;
  std::optional<std::uint64_t> cursor_seq;
  CounterValues counters;
};

// FrameSnapshot: one unread frame (or, MPMC, one slot between the cursors).
struct FrameSnapshot {
  enum class State { kCommitted, kPending, kAbandoned };
  State state = State::kCommitted;
  std::uint64_t sequence = 0;
  std::uint32_t length = 0;
  std::uint32_t flags = 0;
  std::uint32_t producer = 0;      // MPMC: endpoint index of the producer
  std::vector<std::byte> preview;  // the first bytes of the payload
};

// Snapshot: the decoded state of one segment at (about) one instant. Cursors are read in an order
// that keeps read <= write for a live segment (consumer line first, producer line last).
struct Snapshot {
  std::string name;
  std::uint64_t object_size = 0;
  std::uint32_t abi_version = 0;
  Geometry geometry;
  // Cursors. SPSC: byte positions and sequence numbers; MPMC: tickets (== sequence numbers).
  // Broadcast: read_position / next_read_seq are the oldest frame the ring still holds
  // (ControlBlock::oldest_position / oldest_seq); each subscriber has its own cursor.
  std::uint64_t write_position = 0;
  std::uint64_t read_position = 0;
  std::uint64_t next_write_seq = 0;
  std::uint64_t next_read_seq = 0;
  std::uint64_t fill = 0;  // SPSC: bytes between the cursors; MPMC: slots between the cursors;
                           // broadcast: bytes held (oldest frame to the write position)
  bool closed = false;
  std::uint32_t closed_by = 0;    // ControlBlock::closed: kClosedByClose, kClosedByFinish (or junk)
  bool finishing = false;         // MPMC: some producer called finish()
  std::uint32_t frames_held = 0;  // MPMC: consumer entries (live or dead) with a held ticket
  std::uint64_t close_time_ns = 0;
  // Broadcast: the overflow policy (kOverflowBlock / kOverflowOverwrite, or junk), the eviction
  // bound (kNeverEvict: never), and the subscriber entry a blocked publisher sleeps on (none:
  // nullopt; it may name any value in a corrupted segment).
  std::uint32_t overflow = 0;
  std::uint64_t evict_after_ns = 0;
  std::optional<std::uint32_t> publisher_waits_for;
  // Wake words: somebody announced it sleeps there (cleared by the next waker).
  bool data_ready_waiting = false;
  bool space_ready_waiting = false;
  std::uint32_t data_ready_word = 0;
  std::uint32_t space_ready_word = 0;
  std::uint32_t waiters = 0;  // live endpoints that say they sleep on a futex
  std::vector<EndpointSnapshot> endpoints;
  std::uint32_t endpoints_alive = 0;
  std::uint32_t endpoints_dead = 0;  // entries with a role whose owner is gone
  CounterValues retired;             // control.retired
  CounterValues counters;            // retired + every endpoint entry (both roles)
  // The frames/bytes of `counters` split by role: committed by producers, released by consumers.
  std::uint64_t frames_produced = 0;
  std::uint64_t bytes_produced = 0;
  std::uint64_t frames_consumed = 0;
  std::uint64_t bytes_consumed = 0;
  // Requested frames (DecodeOptions::max_frames); frames_note says why fewer were returned.
  std::vector<FrameSnapshot> frames;
  std::string frames_note;

  // Broadcast subscriber lag: frames and bytes between its cursor and the write position (0 if
  // its cursor is ahead, which only a corrupted or racing read shows).
  struct Lag {
    std::uint64_t frames = 0;
    std::uint64_t bytes = 0;
  };
  Lag LagOf(const EndpointSnapshot& e) const;
  // Behind: a broadcast subscriber whose cursor fell below the oldest frame held — lapped
  // (overwrite) or evicted (block); its next read reports the frames it missed.
  bool Behind(const EndpointSnapshot& e) const;
};

// ByteReader reads `size` bytes at `offset` of the object into `out`; returns the number of
// bytes it could read (fewer at end of object). Never faults.
using ByteReader = std::function<std::size_t(std::uint64_t offset, void* out, std::size_t size)>;
// Liveness reports whether endpoint `index` is alive (F_OFD_GETLK on its lock byte).
using Liveness = std::function<bool(std::uint32_t index)>;

struct DecodeOptions {
  std::size_t max_frames = 0;      // how many unread frames to decode
  std::size_t preview_bytes = 16;  // payload bytes kept per frame
};

// Decode decodes a segment of `object_size` bytes (as reported by fstat) read through `read`.
// Errors (one line naming the segment and the cause): DataLoss (empty, truncated, corrupted,
// shrunk while read), FailedPrecondition (not a shmring segment, other ABI version, never
// initialised), Unavailable (still being initialised; `creator_alive` says so).
absl::StatusOr<Snapshot> Decode(std::string_view name, std::uint64_t object_size,
                                const ByteReader& read, const Liveness& alive,
                                const DecodeOptions& options, bool creator_alive = false);

// DecodeSegment: Decode over an in-memory copy. `bytes` may be shorter than `object_size` (an
// object that shrank while it was copied). Pure: for tests and fuzzing.
absl::StatusOr<Snapshot> DecodeSegment(std::string_view name, std::span<const std::byte> bytes,
                                       std::uint64_t object_size, const Liveness& alive,
                                       const DecodeOptions& options = {});

// InspectChannel opens `name` read-only and decodes it (see the file comment). NotFound,
// PermissionDenied and InvalidArgument (bad name) besides Decode's errors.
absl::StatusOr<Snapshot> InspectChannel(std::string_view name, const DecodeOptions& options = {});

// KindName: "spsc" / "mpmc" / "broadcast". (RoleName is in segment.h.)
const char* KindName(Kind kind);
// OverflowName: "block" / "overwrite" ("unknown" for a value no creator writes).
const char* OverflowName(std::uint32_t overflow);
const char* FrameStateName(FrameSnapshot::State state);

}  // namespace shmring::internal

#endif  // SHMRING_LIB_INSPECT_H_
