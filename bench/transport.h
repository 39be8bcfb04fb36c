// transport.h — the transports shmring-bench compares, behind one small interface.
//
// A Transport moves fixed-size messages between two processes: side A (the parent: the pinger
// of a latency run, the sender of a throughput run) and side B (a fork()ed child). It carries two
// directions, A→B and B→A. The life of one benchmark run:
//
//   parent: Setup()                 creates named objects, sockets, shared mappings
//   fork()  A: Attach(kA)           B: Attach(kB)        (shmring endpoints never cross a fork)
//           A: Send/Receive ...     B: Receive/Send ...
//   parent: waitpid, Cleanup()      removes every named object Setup created
//
// Send and Receive move exactly Config::size bytes; they return false on an error (the peer went
// away, a queue refused the size, a deadline passed), never throw.
#ifndef SHMRING_BENCH_TRANSPORT_H_
#define SHMRING_BENCH_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "shmring/result.h"

namespace shmring::bench {

enum class Side { kA, kB };

// Wait: how a receiver waits. Kernel transports always block; floor and naive always spin.
enum class Wait { kSpin, kBlock, kHybrid };
std::string_view WaitName(Wait wait);
// ToWaitMode: the library's EndpointOptions::wait for a Wait (shmring-* endpoints).
shmring::WaitMode ToWaitMode(Wait wait);

// NowNs: CLOCK_MONOTONIC in nanoseconds (what every run is timed with).
std::int64_t NowNs();

struct Config {
  std::size_t size = 64;     // bytes per message (>= 8: the first 8 carry the sequence number)
  Wait wait = Wait::kBlock;  // for transports that offer a choice (shmring-*)
  // Stream (throughput) rather than ping-pong. A ping-pong's reply proves the peer consumed the
  // message, so single-slot transports (floor, eventfd) skip their back-pressure in that mode.
  bool stream = false;
  absl::Time deadline = absl::InfiniteFuture();  // no single operation waits past this
  // Stream mode, shmring-spsc: the sender publishes every `batch` frames (commit_deferred for the
  // others, flush before waiting for anything) and the receiver publishes its releases every
  // `batch` frames (release_deferred). 1: commit() and release() publish every frame.
  std::size_t batch = 1;
  // Ring transports (TakesCapacity): the bytes of each direction's ring, a power of two
  // (--capacity). 0: kDefaultRingBytes, with the fallbacks the bench always had (shmring-mpmc at
  // least 16 slots, naive at least 2).
  std::uint64_t capacity = 0;
  // Fan-out transports (TransportInfo::fanout): how many subscriber processes receive every
  // message (--subscribers, 1..kMaxSubscribers).
  int subscribers = 1;
};

// kMaxSubscribers: the most subscriber processes a fan-out run forks.
inline constexpr int kMaxSubscribers = 16;

// kDefaultRingBytes: each direction's ring of a ring transport when --capacity is not given.
inline constexpr std::uint64_t kDefaultRingBytes = std::uint64_t{1} << 20;

// TakesCapacity: whether transport `name` has a ring whose size --capacity sets (shmring-spsc,
// shmring-mpmc, naive; the fan-out transports' publishing rings: each SPSC channel of
// shmring-spsc-fanout, the broadcast ring).
bool TakesCapacity(std::string_view name);
// CheckCapacity: OK if a ring of transport `name` of `capacity` bytes (a power of two) holds
// messages of `size` bytes: shmring-spsc, a frame of size + 16 bytes fits twice (the library's
// rule; also the fan-out transports' byte rings); shmring-mpmc and naive, at least two slots.
// Otherwise InvalidArgument saying what fits.
absl::Status CheckCapacity(std::string_view name, std::size_t size, std::uint64_t capacity);
// MpmcSlots: the slots of a shmring-mpmc ring of `capacity` bytes (0: the default) for messages
// of `size` bytes — the largest power of two whose slots fit in it.
std::uint64_t MpmcSlots(std::size_t size, std::uint64_t capacity);

class Transport {
 public:
  virtual ~Transport() = default;
  // Setup runs in the parent before fork(). Names it creates must be registered with
  // RegisterName() so a signal or an error still removes them.
  virtual absl::Status Setup(const Config& config) = 0;
  // Attach runs in each process after fork().
  virtual absl::Status Attach(Side side) = 0;
  // Send: side A sends on A→B, side B on B→A. Receive: the other direction.
  virtual bool Send(const std::byte* message) = 0;
  virtual bool Receive(std::byte* message) = 0;
  // Cleanup runs in the parent after the child exited (or was killed). Idempotent.
  virtual void Cleanup() = 0;

  // ---- fan-out transports (TransportInfo::fanout) ----
  // Side A publishes each message once to Config::subscribers side-B processes; each one replies
  // (echo, acknowledgement) on a channel of its own.
  //
  // AttachSubscriber runs in side-B process `subscriber` (0-based) instead of Attach(kB).
  // Default: Attach(kB), the one side B of a point-to-point transport.
  virtual absl::Status AttachSubscriber(int subscriber);
  // ReceiveEach (side A): one reply from every subscriber, each carrying sequence number
  // `sequence` in its first 8 bytes; arrival_ns[k] is when subscriber k's reply was seen
  // (NowNs). `scratch` holds Config::size bytes. False on an error, a deadline, or a reply
  // carrying another sequence number. Default (point-to-point): Receive, then the check.
  virtual bool ReceiveEach(std::uint64_t sequence, std::byte* scratch, std::int64_t* arrival_ns);
};

// TransportInfo: one entry of the table of transports.
struct TransportInfo {
  std::string_view name;
  bool latency;          // offers ping-pong
  bool throughput;       // offers streaming
  bool has_wait_choice;  // honours Config::wait (otherwise the wait is fixed)
  Wait fixed_wait;       // the wait reported when !has_wait_choice
  std::string_view description;
  bool fanout = false;  // one publisher, --subscribers N receivers (AttachSubscriber, ReceiveEach)
};

const std::vector<TransportInfo>& Transports();
const TransportInfo* FindTransport(std::string_view name);
std::unique_ptr<Transport> MakeTransport(std::string_view name);

// MapSharedAnonymous: a MAP_SHARED anonymous mapping made before fork(), so both processes see
// the same pages (no name to clean up). nullptr on failure.
std::byte* MapSharedAnonymous(std::size_t bytes);

// ---- names created by the bench, removed on exit, error or signal ----

// UniqueName returns "/shmring-bench-<pid>-<n>-<tag>", n counting the names made so far.
std::string UniqueName(std::string_view tag);

// NameKind: which unlink removes the object.
enum class NameKind { kShm, kMq };
// RegisterName records an object for RemoveRegisteredNames (async-signal-safe to call from a
// handler; registration itself is not). UnregisterName forgets it once removed normally.
void RegisterName(const std::string& name, NameKind kind);
void UnregisterName(const std::string& name);
void RemoveRegisteredNames();

}  // namespace shmring::bench

#endif  // SHMRING_BENCH_TRANSPORT_H_
