// segment.h — opening, validating and mapping a shmring segment; OFD-lock liveness.
//
// Segment owns one open file description of the shm object and one mapping of it. Every endpoint
// (producer, consumer) and every inspector opens its own Segment: the OFD locks that mark an
// endpoint alive belong to the description, so sharing one would share liveness.
//
// Validation treats the object as written by a hostile peer: the header is copied once into a
// local, checked against fstat and against the geometry recomputed from its own parameters, and
// only that validated copy (Geometry) is used afterwards.
#ifndef SHMRING_LIB_SEGMENT_H_
#define SHMRING_LIB_SEGMENT_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "layout.h"
#include "platform.h"
#include "shmring/channel.h"

namespace shmring::internal {

// Geometry: the validated, immutable description of a segment.
struct Geometry {
  Kind kind = Kind::kSpsc;
  std::uint64_t total_size = 0;
  std::uint64_t capacity = 0;
  std::uint32_t max_frame = 0;
  std::uint32_t slot_stride = 0;
  std::uint32_t max_endpoints = 0;
  std::uint64_t control_offset = 0;
  std::uint64_t endpoints_offset = 0;
  std::uint64_t data_offset = 0;
  std::uint64_t data_size = 0;
  // Broadcast: kOverflowBlock / kOverflowOverwrite, and the eviction bound (kNeverEvict).
  std::uint32_t overflow = 0;
  std::uint64_t evict_after_ns = 0;
  // Informational, from the header.
  std::uint32_t creator_uid = 0;
  std::uint32_t creator_pid = 0;
  std::uint64_t creation_time_ns = 0;
};

// ComputeGeometry checks creation options and lays the segment out. InvalidArgument names the
// offending value. `max_endpoints`: MPMC endpoints, broadcast subscribers (the table then has one
// more entry, the publisher's); ignored for SPSC. Does not set overflow/evict_after_ns.
absl::StatusOr<Geometry> ComputeGeometry(std::string_view name, shmring::Kind kind,
                                         std::uint64_t capacity, std::uint32_t max_frame,
                                         std::uint32_t max_endpoints);

// ValidateHeader checks a copy of a header read from an object of `object_size` bytes. It does
// not look at init_state. Pure function (fuzzed).
absl::StatusOr<Geometry> ValidateHeader(std::string_view name, const SegmentHeader& header,
                                        std::uint64_t object_size);

// Debian's Abseil has its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0); AV converts.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view SV(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// Message prefix naming a channel: "shmring channel '/name': ".
std::string Prefix(std::string_view canonical_name);

// ErrnoStatus: the one errno -> absl::Status mapping of the library. NotFound ("no such
// channel"), AlreadyExists, PermissionDenied (EACCES, EPERM, and ELOOP: a symbolic link at the
// name), InvalidArgument, ResourceExhausted; anything else Internal. The message is
// "<Prefix>what: strerror".
absl::Status ErrnoStatus(int err, std::string_view canonical_name, std::string_view what);

// Where Linux shows POSIX shm objects as files (object "/x" is kShmDirectory + "/x").
inline constexpr char kShmDirectory[] = "/dev/shm";

// PublishClose marks end-of-stream in `control` (if still open; `how`: kClosedByClose or, when
// every MPMC producer finished, kClosedByFinish) and wakes every sleeper: the one close protocol,
// used by SpscProducer::close, MpmcProducer::close/finish and CloseChannel (in channel.cc).
void PublishClose(ControlBlock& control, std::uint32_t how = kClosedByClose);

// RoleName: "producer" / "consumer" / "none" / "role<N>" (any value read from a segment).
std::string RoleName(std::uint32_t role);

enum class Access { kReadWrite, kReadOnly };

struct OpenOptions {
  Access access = Access::kReadWrite;
  std::optional<shmring::Kind> expected_kind;  // FailedPrecondition when it differs
  absl::Time deadline = absl::InfinitePast();  // wait this long for a creator still initialising
  bool allow_shared_mode = false;              // accept group/other-writable or foreign objects
};

// OFD lock helpers on any fd of a shm object.
bool TryLockByte(int fd, std::int64_t offset);  // F_OFD_SETLK write lock; false if held
void UnlockByte(int fd, std::int64_t offset);
bool IsByteLocked(int fd, std::int64_t offset);  // F_OFD_GETLK: held by another description

class Segment {
 public:
  // Open validates the object `name` and maps it whole (PROT_READ for kReadOnly).
  static absl::StatusOr<std::unique_ptr<Segment>> Open(std::string_view name,
                                                       const OpenOptions& options);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const std::string& name() const { return name_; }
  const Geometry& geometry() const { return geometry_; }
  int fd() const { return fd_; }

  SegmentHeader* header() const { return reinterpret_cast<SegmentHeader*>(base_); }
  ControlBlock* control() const {
    return reinterpret_cast<ControlBlock*>(base_ + geometry_.control_offset);
  }
  EndpointEntry* endpoint(std::uint32_t index) const {
    return reinterpret_cast<EndpointEntry*>(base_ + geometry_.endpoints_offset) + index;
  }
  std::byte* data() const { return base_ + geometry_.data_offset; }

  // EndpointAlive: some process holds endpoint `index`'s liveness lock (never true for a lock
  // held through this Segment's own description).
  bool EndpointAlive(std::uint32_t index) const {
    return IsByteLocked(fd_, kEndpointLockBase + index);
  }

 private:
  struct Mapping;
  Segment(std::string name, int fd, std::shared_ptr<Mapping> mapping, Geometry geometry);
  static absl::StatusOr<std::shared_ptr<Mapping>> MapShared(int fd, const std::string& name,
                                                            const struct stat& st,
                                                            std::uint64_t total_size,
                                                            bool writable);

  std::string name_;
  int fd_;
  // Endpoints of one process share one mapping of an object (keyed by device and inode): it
  // saves address space, and it lets ThreadSanitizer see a producer thread and a consumer thread
  // touch the same addresses. Each Segment still has its own fd, hence its own OFD locks.
  std::shared_ptr<Mapping> mapping_;
  std::byte* base_;
  Geometry geometry_;
};

}  // namespace shmring::internal

#endif  // SHMRING_LIB_SEGMENT_H_
