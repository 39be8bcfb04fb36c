#include "segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <tuple>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "stale.h"

namespace shmring {

static_assert(static_cast<std::uint32_t>(Kind::kSpsc) == internal::kKindSpsc);
static_assert(static_cast<std::uint32_t>(Kind::kMpmc) == internal::kKindMpmc);
static_assert(static_cast<std::uint32_t>(Kind::kBroadcast) == internal::kKindBroadcast);
static_assert(static_cast<std::uint32_t>(OverflowPolicy::kBlock) == internal::kOverflowBlock);
static_assert(static_cast<std::uint32_t>(OverflowPolicy::kOverwrite) ==
              internal::kOverflowOverwrite);
static_assert(sizeof(internal::MpmcSlotHeader) + kDefaultMpmcMaxFrame == 1024,
              "the default MPMC max_frame fills one 1 KiB slot");

namespace {

constexpr std::size_t kMaxNameLength = 200;
constexpr std::uint64_t kMinSpscCapacity = 4096;
constexpr std::uint64_t kMaxDataSize = std::uint64_t{1} << 40;
constexpr std::uint32_t kMaxMpmcFrame = 16u << 20;
constexpr std::uint32_t kMaxEndpoints = 4096;

bool NameCharOk(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

absl::Status ValidateName(std::string_view name) {
  std::string_view body = name;
  if (!body.empty() && body.front() == '/') body.remove_prefix(1);
  if (body.empty() || body.size() > kMaxNameLength || body == "." || body == "..") {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid shmring channel name '", absl::CHexEscape(internal::AV(name)), "': want 1..",
        kMaxNameLength, " characters of [A-Za-z0-9._-], optionally after one leading '/'"));
  }
  for (char c : body) {
    if (!NameCharOk(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid shmring channel name '", absl::CHexEscape(internal::AV(name)), "': character '",
          absl::CHexEscape(absl::string_view(&c, 1)), "' is not allowed (use [A-Za-z0-9._-])"));
    }
  }
  return absl::OkStatus();
}

std::string CanonicalName(std::string_view name) {
  if (!name.empty() && name.front() == '/') return std::string(name);
  return absl::StrCat("/", internal::AV(name));
}

namespace internal {

std::string Prefix(std::string_view canonical_name) {
  return absl::StrCat("shmring channel '", AV(canonical_name), "': ");
}

absl::Status ErrnoStatus(int err, std::string_view canonical, std::string_view what) {
  std::string message = absl::StrCat(Prefix(canonical), AV(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(absl::StrCat(Prefix(canonical), "no such channel"));
    case EEXIST:
      return absl::AlreadyExistsError(absl::StrCat(Prefix(canonical), "already exists"));
    case ELOOP:  // glibc's shm_open adds O_NOFOLLOW: a symlink at the name
      return absl::PermissionDeniedError(
          absl::StrCat(Prefix(canonical), "is a symbolic link; refused"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EINVAL:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(message);
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

std::string RoleName(std::uint32_t role) {
  switch (role) {
    case static_cast<std::uint32_t>(Role::kNone):
      return "none";
    case static_cast<std::uint32_t>(Role::kProducer):
      return "producer";
    case static_cast<std::uint32_t>(Role::kConsumer):
      return "consumer";
    default:
      return absl::StrCat("role", role);
  }
}

namespace {

// ByteRingGeometry: SPSC and broadcast (the same byte ring and frame format).
absl::Status ByteRingGeometry(const std::string& p, std::string_view kind_name,
                              std::uint64_t capacity, std::uint32_t max_frame, Geometry* g) {
  if (!IsPowerOfTwo(capacity) || capacity < kMinSpscCapacity || capacity > kMaxDataSize) {
    return absl::InvalidArgumentError(absl::StrCat(p, AV(kind_name), " capacity ", capacity,
                                                   " bytes is not a power of two in [",
                                                   kMinSpscCapacity, ", ", kMaxDataSize, "]"));
  }
  // A frame must fit in half the ring: then it fits either before the end or, after a padding
  // frame, at the start, whatever the write position.
  const std::uint64_t largest = capacity / 2 - sizeof(FrameHeader);
  const std::uint64_t limit = largest > UINT32_MAX ? UINT32_MAX : largest;
  if (max_frame == 0) max_frame = static_cast<std::uint32_t>(limit);
  if (max_frame > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "max_frame ", max_frame, " bytes does not fit an ", AV(kind_name),
                     " ring of ", capacity, " bytes (at most ", limit, ")"));
  }
  g->max_frame = max_frame;
  g->slot_stride = 0;
  g->data_size = capacity;
  return absl::OkStatus();
}

absl::Status MpmcGeometry(const std::string& p, std::uint64_t capacity, std::uint32_t max_frame,
                          Geometry* g) {
  if (!IsPowerOfTwo(capacity) || capacity < 2 || capacity > kMaxMpmcSlots) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, "MPMC capacity ", capacity, " slots is not a power of two in [2, ", kMaxMpmcSlots, "]"));
  }
  if (max_frame == 0) max_frame = kDefaultMpmcMaxFrame;
  if (max_frame > kMaxMpmcFrame) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, "max_frame ", max_frame, " bytes exceeds the MPMC limit of ", kMaxMpmcFrame));
  }
  g->max_frame = max_frame;
  g->slot_stride = static_cast<std::uint32_t>(MpmcSlotBytes(max_frame));
  g->data_size = capacity * g->slot_stride;
  if (g->data_size > kMaxDataSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "MPMC ring of ", capacity, " slots of ", g->slot_stride,
                     " bytes exceeds the size limit of ", kMaxDataSize, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckEndpointCount(const std::string& p, std::string_view what, std::uint32_t n) {
  if (n == 0 || n > kMaxEndpoints) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, AV(what), " ", n, " is not in [1, ", kMaxEndpoints, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Geometry> ComputeGeometry(std::string_view name, shmring::Kind kind,
                                         std::uint64_t capacity, std::uint32_t max_frame,
                                         std::uint32_t max_endpoints) {
  const std::string p = Prefix(name);
  Geometry g;
  g.kind = kind;
  g.capacity = capacity;
  absl::Status status;
  if (kind == shmring::Kind::kSpsc) {
    status = ByteRingGeometry(p, "SPSC", capacity, max_frame, &g);
    g.max_endpoints = 2;
  } else if (kind == shmring::Kind::kMpmc) {
    status = MpmcGeometry(p, capacity, max_frame, &g);
    if (status.ok()) status = CheckEndpointCount(p, "max_endpoints", max_endpoints);
    g.max_endpoints = max_endpoints;
  } else if (kind == shmring::Kind::kBroadcast) {
    status = ByteRingGeometry(p, "broadcast", capacity, max_frame, &g);
    if (status.ok()) status = CheckEndpointCount(p, "max_endpoints (subscribers)", max_endpoints);
    g.max_endpoints = max_endpoints + 1;  // entry 0 is the publisher's
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "unknown ring kind ", static_cast<std::uint32_t>(kind)));
  }
  if (!status.ok()) return status;
  g.control_offset = sizeof(SegmentHeader);
  g.endpoints_offset = g.control_offset + sizeof(ControlBlock);
  g.data_offset = AlignUp(
      g.endpoints_offset + std::uint64_t{g.max_endpoints} * sizeof(EndpointEntry), kPageSize);
  g.total_size = g.data_offset + g.data_size;
  return g;
}

absl::StatusOr<Geometry> ValidateHeader(std::string_view name, const SegmentHeader& h,
                                        std::uint64_t object_size) {
  const std::string p = Prefix(name);
  if (object_size < sizeof(SegmentHeader)) {
    return absl::DataLossError(absl::StrCat(p, "object is ", object_size,
                                            " bytes, smaller than a shmring header (",
                                            sizeof(SegmentHeader), "): truncated or not shmring"));
  }
  if (h.magic != kMagic) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%snot a shmring segment (magic 0x%016x, want 0x%016x)", p, h.magic, kMagic));
  }
  if (h.abi_version != kAbiVersion) {
    return absl::FailedPreconditionError(absl::StrCat(p, "segment has ABI version ", h.abi_version,
                                                      ", this library speaks version ",
                                                      kAbiVersion));
  }
  if (h.header_size != sizeof(SegmentHeader) || h.endpoint_size != sizeof(EndpointEntry)) {
    return absl::DataLossError(absl::StrCat(p, "corrupted header: header_size ", h.header_size,
                                            ", endpoint_size ", h.endpoint_size));
  }
  if (h.kind != kKindSpsc && h.kind != kKindMpmc && h.kind != kKindBroadcast) {
    return absl::DataLossError(absl::StrCat(p, "corrupted header: unknown ring kind ", h.kind));
  }
  const bool broadcast = h.kind == kKindBroadcast;
  if (broadcast ? h.overflow > kOverflowOverwrite : h.overflow != 0) {
    return absl::DataLossError(absl::StrCat(p, "corrupted header: overflow policy ", h.overflow,
                                            " for ring kind ", h.kind));
  }
  // Broadcast: the table holds the publisher's entry and max_endpoints - 1 subscribers'.
  const std::uint32_t requested =
      broadcast && h.max_endpoints > 0 ? h.max_endpoints - 1 : h.max_endpoints;
  auto expected =
      ComputeGeometry(name, static_cast<shmring::Kind>(h.kind), h.capacity, h.max_frame, requested);
  if (!expected.ok() || expected->max_frame != h.max_frame) {
    return absl::DataLossError(absl::StrCat(p, "corrupted header: impossible geometry (capacity ",
                                            h.capacity, ", max_frame ", h.max_frame,
                                            ", max_endpoints ", h.max_endpoints, ")"));
  }
  Geometry g = *expected;
  if (h.max_endpoints != g.max_endpoints || h.slot_stride != g.slot_stride ||
      h.control_offset != g.control_offset || h.endpoints_offset != g.endpoints_offset ||
      h.data_offset != g.data_offset || h.data_size != g.data_size ||
      h.total_size != g.total_size) {
    return absl::DataLossError(
        absl::StrCat(p, "corrupted header: offsets/sizes disagree with the geometry (total_size ",
                     h.total_size, ", expected ", g.total_size, ")"));
  }
  if (g.total_size > object_size) {
    return absl::DataLossError(absl::StrCat(p, "truncated: header says ", g.total_size,
                                            " bytes, the object has ", object_size));
  }
  g.creator_uid = h.creator_uid;
  g.creator_pid = h.creator_pid;
  g.creation_time_ns = h.creation_time_ns;
  g.overflow = h.overflow;
  g.evict_after_ns = h.evict_after_ns;
  return g;
}

bool TryLockByte(int fd, std::int64_t offset) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  return fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

void UnlockByte(int fd, std::int64_t offset) {
  struct flock fl {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  (void)fcntl(fd, F_OFD_SETLK, &fl);
}

bool IsByteLocked(int fd, std::int64_t offset) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return false;
  return fl.l_type != F_UNLCK;
}

struct Segment::Mapping {
  std::byte* base = nullptr;
  std::uint64_t size = 0;
  ~Mapping() {
    if (base != nullptr) munmap(base, size);
  }
};

Segment::Segment(std::string name, int fd, std::shared_ptr<Mapping> mapping, Geometry geometry)
    : name_(std::move(name)),
      fd_(fd),
      mapping_(std::move(mapping)),
      base_(mapping_->base),
      geometry_(geometry) {}

Segment::~Segment() {
  mapping_.reset();
  if (fd_ >= 0) close(fd_);
}

namespace {

// CheckObject: what Segment::Open requires of the object before reading it: a regular file,
// owned by this user and not writable by group/other (unless shared mode is allowed).
absl::Status CheckObject(const struct stat& st, const std::string& p, const OpenOptions& options) {
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(p, "not a regular shm object"));
  }
  if (options.allow_shared_mode) return absl::OkStatus();
  if (st.st_uid != geteuid()) {
    return absl::PermissionDeniedError(absl::StrCat(p, "owned by uid ", st.st_uid,
                                                    ", not by this user (uid ", geteuid(),
                                                    "); refused unless shared mode is allowed"));
  }
  if ((st.st_mode & 022) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%smode %04o lets group/other write it; refused unless shared mode is allowed", p,
        st.st_mode & 07777));
  }
  return absl::OkStatus();
}

// HeaderRead: one look at the header of an object of `size` bytes: either its validated geometry
// (ready), a final error, or `not_ready` (worth waiting for while a creator holds the init lock).
struct HeaderRead {
  absl::StatusOr<Geometry> geometry = absl::UnknownError("unset");
  bool ready = false;
  absl::Status not_ready;
};

absl::StatusOr<HeaderRead> ReadHeader(int fd, const std::string& name, std::uint64_t size) {
  const std::string p = Prefix(name);
  HeaderRead out;
  if (size == 0) {
    out.not_ready = absl::DataLossError(absl::StrCat(
        p, "zero-length object: not a shmring segment, or its creator died before sizing it"));
    return out;
  }
  if (size < sizeof(SegmentHeader)) {
    out.not_ready = ValidateHeader(name, SegmentHeader{}, size).status();
    return out;
  }
  // Map only the header first: the object may be too short for what the header claims.
  void* hdr = mmap(nullptr, sizeof(SegmentHeader), PROT_READ, MAP_SHARED, fd, 0);
  if (hdr == MAP_FAILED) return ErrnoStatus(errno, name, "mmap of the header failed");
  const auto* shared = static_cast<const SegmentHeader*>(hdr);
  // Acquire: pairs with the creator's release store of kReady in CreateChannel, so the header
  // fields copied below are the initialised ones.
  const std::uint32_t state = shared->init_state.load(std::memory_order_acquire);
  SegmentHeader copy;
  std::memcpy(static_cast<void*>(&copy), hdr, sizeof(copy));
  munmap(hdr, sizeof(SegmentHeader));
  if (copy.magic != kMagic && copy.magic != 0) {
    return ValidateHeader(name, copy, size).status();  // not ours, whatever its state: fail now
  }
  if (state == static_cast<std::uint32_t>(InitState::kReady)) {
    out.ready = true;
    out.geometry = ValidateHeader(name, copy, size);
    return out;
  }
  out.not_ready = absl::FailedPreconditionError(absl::StrCat(
      p,
      "was never initialised: its creator died before finishing (remove it, or create it with "
      "reclaim_stale)"));
  return out;
}

struct MappingKey {
  dev_t dev;
  ino_t ino;
  bool writable;
  std::uint64_t size;
  bool operator<(const MappingKey& o) const {
    return std::tie(dev, ino, writable, size) < std::tie(o.dev, o.ino, o.writable, o.size);
  }
};

}  // namespace

// MapShared returns this process's mapping of the object (keyed by device, inode, access and
// size), mapping it if no endpoint of this process has it mapped yet (see Segment::mapping_).
absl::StatusOr<std::shared_ptr<Segment::Mapping>> Segment::MapShared(int fd,
                                                                     const std::string& name,
                                                                     const struct stat& st,
                                                                     std::uint64_t total_size,
                                                                     bool writable) {
  static std::mutex registry_mutex;
  static std::map<MappingKey, std::weak_ptr<Mapping>> registry;
  const MappingKey key{st.st_dev, st.st_ino, writable, total_size};
  std::lock_guard<std::mutex> lock(registry_mutex);
  if (std::shared_ptr<Mapping> mapping = registry[key].lock()) return mapping;
  std::erase_if(registry, [](const auto& entry) { return entry.second.expired(); });
  // Map through a description of our own, not through `fd`: a mapping keeps the open file
  // description it was made from alive, and with it any OFD lock taken through that description
  // — the shared mapping would keep this endpoint "alive" after it detached. Reopening
  // /proc/self/fd/N yields a new description of the same inode.
  const int map_fd =
      open(absl::StrCat("/proc/self/fd/", fd).c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (map_fd < 0) return ErrnoStatus(errno, name, "cannot reopen for mapping");
  struct stat map_st;
  if (fstat(map_fd, &map_st) != 0 || map_st.st_ino != st.st_ino || map_st.st_dev != st.st_dev) {
    close(map_fd);
    return absl::InternalError(absl::StrCat(Prefix(name), "reopened object is not the same inode"));
  }
  void* base = mmap(nullptr, total_size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
                    map_fd, 0);
  const int map_errno = errno;
  close(map_fd);
  if (base == MAP_FAILED) return ErrnoStatus(map_errno, name, "mmap failed");
  auto mapping = std::make_shared<Mapping>();
  mapping->base = static_cast<std::byte*>(base);
  mapping->size = total_size;
  registry[key] = mapping;
  return mapping;
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Open(std::string_view raw_name,
                                                       const OpenOptions& options) {
  if (absl::Status s = ValidateName(raw_name); !s.ok()) return s;
  const std::string name = CanonicalName(raw_name);
  const std::string p = Prefix(name);
  const bool writable = options.access == Access::kReadWrite;
  // glibc's shm_open adds O_NOFOLLOW and O_CLOEXEC: a symlink at the name is refused (ELOOP).
  // O_NONBLOCK: a FIFO planted under the name must not hang the open (CheckObject refuses it).
  int fd = shm_open(name.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(errno, name, "cannot open");
  struct FdCloser {
    int fd;
    ~FdCloser() {
      if (fd >= 0) close(fd);
    }
  } closer{fd};

  // A creator that is alive but not done holds the init lock: wait for it up to the deadline.
  // One that died (or an object no shmring creator made) does not: then a short grace period
  // covers the window between the creator's shm_open and its taking the lock.
  const absl::Time grace_end = WallNow() + absl::Milliseconds(50);
  for (;;) {
    struct stat st;
    if (fstat(fd, &st) != 0) return ErrnoStatus(errno, name, "fstat failed");
    if (absl::Status s = CheckObject(st, p, options); !s.ok()) return s;
    absl::StatusOr<HeaderRead> header =
        ReadHeader(fd, name, static_cast<std::uint64_t>(st.st_size));
    if (!header.ok()) return header.status();
    if (header->ready) {
      if (!header->geometry.ok()) return header->geometry.status();
      const Geometry& g = *header->geometry;
      if (options.expected_kind.has_value() && g.kind != *options.expected_kind) {
        auto kind_name = [](shmring::Kind k) {
          return k == shmring::Kind::kSpsc   ? "SPSC"
                 : k == shmring::Kind::kMpmc ? "MPMC"
                                             : "broadcast";
        };
        return absl::FailedPreconditionError(absl::StrCat(
            p, "is a", g.kind == shmring::Kind::kBroadcast ? " " : "n ", kind_name(g.kind),
            " channel, opened as ", kind_name(*options.expected_kind)));
      }
      auto mapping = MapShared(fd, name, st, g.total_size, writable);
      if (!mapping.ok()) return mapping.status();
      closer.fd = -1;
      return std::unique_ptr<Segment>(new Segment(name, fd, std::move(*mapping), g));
    }
    const absl::Time now = WallNow();
    const bool creator_alive = IsByteLocked(fd, kInitLockOffset);
    if (!creator_alive && now >= grace_end) return header->not_ready;
    if (creator_alive && now >= options.deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(p, "still being initialised by its creator; gave up at the deadline"));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

}  // namespace internal

namespace {

// Removes the object `name` if nobody uses it (RemovedByReclaim). Returns true if the caller
// should retry the exclusive create (removed, or gone already); AlreadyExists if it is in use or
// not a segment this library may remove.
absl::StatusOr<bool> ReclaimIfStale(const std::string& name) {
  const std::string p = internal::Prefix(name);
  int fd = shm_open(name.c_str(), O_RDWR | O_NONBLOCK, 0);
  if (fd < 0) {
    if (errno == ENOENT) return true;  // gone already: just retry
    return internal::ErrnoStatus(errno, name, "cannot open the existing object to check it");
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  // Holding the init lock keeps a concurrent reclaimer (and openers) off this object while we
  // decide; a live creator holds it too, so then the object is not stale.
  if (!internal::TryLockByte(fd, internal::kInitLockOffset)) {
    return absl::AlreadyExistsError(absl::StrCat(p, "already exists and is being initialised"));
  }
  absl::StatusOr<internal::StaleVerdict> v = internal::JudgeStaleness(fd, name);
  if (!v.ok()) return v.status();
  switch (v->staleness) {
    case internal::Staleness::kForeign:
      return absl::AlreadyExistsError(
          absl::StrCat(p, "already exists and is not a shmring segment; not removing it"));
    case internal::Staleness::kInvalid:
      return absl::AlreadyExistsError(absl::StrCat(
          p, "already exists and fails validation; not removing it: ", v->why.message()));
    case internal::Staleness::kLive:
      return absl::AlreadyExistsError(
          absl::StrCat(p, "already exists and has a live endpoint; not reclaiming it"));
    default:
      break;
  }
  if (!internal::RemovedByReclaim(v->staleness)) {
    return absl::AlreadyExistsError(absl::StrCat(p, "already exists; not reclaiming it"));
  }
  absl::StatusOr<bool> removed = internal::UnlinkIfSame(name, v->st);
  if (!removed.ok()) return removed.status();
  return true;  // removed, or somebody replaced it: retry either way
}

// InitializeSegment writes a new segment's header, control block, endpoint table and (MPMC) slot
// turns into the zero-filled mapping `bytes`, all but init_state, which the caller publishes.
internal::SegmentHeader* InitializeSegment(std::byte* bytes, const internal::Geometry& g) {
  // The object is zero-filled by ftruncate; construct the atomics in place and set the fields
  // that are not zero.
  auto* header = new (bytes) internal::SegmentHeader{};
  header->magic = internal::kMagic;
  header->abi_version = internal::kAbiVersion;
  header->header_size = sizeof(internal::SegmentHeader);
  header->kind = static_cast<std::uint32_t>(g.kind);
  header->total_size = g.total_size;
  header->capacity = g.capacity;
  header->max_frame = g.max_frame;
  header->slot_stride = g.slot_stride;
  header->control_offset = g.control_offset;
  header->endpoints_offset = g.endpoints_offset;
  header->max_endpoints = g.max_endpoints;
  header->endpoint_size = sizeof(internal::EndpointEntry);
  header->data_offset = g.data_offset;
  header->data_size = g.data_size;
  header->creator_uid = static_cast<std::uint32_t>(geteuid());
  header->creator_pid = static_cast<std::uint32_t>(getpid());
  header->creation_time_ns = internal::NowRealtimeNs();
  header->overflow = g.overflow;
  header->evict_after_ns = g.evict_after_ns;
  new (bytes + g.control_offset) internal::ControlBlock{};
  for (std::uint32_t i = 0; i < g.max_endpoints; ++i) {
    auto* e = new (bytes + g.endpoints_offset + i * sizeof(internal::EndpointEntry))
        internal::EndpointEntry{};
    e->claim_ticket.store(internal::kNoTicket, std::memory_order_relaxed);
    e->held_ticket.store(internal::kNoTicket, std::memory_order_relaxed);
  }
  if (g.kind == Kind::kMpmc) {
    for (std::uint64_t i = 0; i < g.capacity; ++i) {
      auto* slot = new (bytes + g.data_offset + i * g.slot_stride) internal::MpmcSlotHeader{};
      slot->turn.store(i, std::memory_order_relaxed);  // free for ticket i
    }
  } else {
    // The ring starts zeroed and 0 is the first sequence number: the first header slot must say
    // "no frame" (layout.h, kFrameNotReady). Published by the init_state release store.
    new (bytes + g.data_offset) internal::FrameHeader{0, 0, internal::kFrameNotReady};
  }
  return header;
}

// GeometryOf validates `options` (ComputeGeometry, then mode and the broadcast policy) and returns
// the complete geometry of the new channel.
absl::StatusOr<internal::Geometry> GeometryOf(const std::string& name,
                                              const ChannelOptions& options) {
  const std::string p = internal::Prefix(name);
  absl::StatusOr<internal::Geometry> g = internal::ComputeGeometry(
      name, options.kind, options.capacity, options.max_frame, options.max_endpoints);
  if (!g.ok()) return g.status();
  if ((options.mode & ~mode_t{0777}) != 0 || (options.mode & 0600) != 0600) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%smode %o: want permission bits (0..0777) including owner read/write (0600)", p,
        options.mode));
  }
  const auto overflow = static_cast<std::uint32_t>(options.overflow);
  if (overflow > internal::kOverflowOverwrite) {
    return absl::InvalidArgumentError(absl::StrCat(p, "unknown overflow policy ", overflow));
  }
  if (options.kind != Kind::kBroadcast) {
    if (options.overflow != OverflowPolicy::kBlock) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, "an overflow policy applies to broadcast channels only"));
    }
    return g;
  }
  if (options.evict_after < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "evict_after ", absl::FormatDuration(options.evict_after), " is negative"));
  }
  g->overflow = overflow;
  g->evict_after_ns =
      options.evict_after == absl::InfiniteDuration()
          ? internal::kNeverEvict
          : static_cast<std::uint64_t>(absl::ToInt64Nanoseconds(options.evict_after));
  return g;
}

// CreateExclusive creates the object `name` with O_EXCL, replacing a stale one first if asked.
absl::StatusOr<int> CreateExclusive(const std::string& name, bool reclaim_stale) {
  int fd = -1;
  for (int attempt = 0; attempt < 3; ++attempt) {
    fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0 || errno != EEXIST || !reclaim_stale) break;
    absl::StatusOr<bool> reclaimed = ReclaimIfStale(name);
    if (!reclaimed.ok()) return reclaimed.status();
  }
  if (fd < 0) return internal::ErrnoStatus(errno, name, "cannot create");
  return fd;
}

// SizeAndInitialize gives the new object `fd` its mode and size and initialises it, publishing
// init_state = kReady last. The caller holds the init lock and unlinks the object on failure.
absl::Status SizeAndInitialize(int fd, const std::string& name, const internal::Geometry& g,
                               mode_t mode) {
  if (fchmod(fd, mode) != 0) return internal::ErrnoStatus(errno, name, "fchmod failed");
  if (ftruncate(fd, static_cast<off_t>(g.total_size)) != 0) {
    return internal::ErrnoStatus(errno, name,
                                 absl::StrCat("cannot size to ", g.total_size, " bytes"));
  }
  // Reserve the memory now so a full /dev/shm fails here, not with SIGBUS on first touch.
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(g.total_size)); err != 0) {
    return internal::ErrnoStatus(err, name,
                                 absl::StrCat("cannot allocate ", g.total_size, " bytes"));
  }
  void* base = mmap(nullptr, g.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return internal::ErrnoStatus(errno, name, "mmap failed");
  internal::SegmentHeader* header = InitializeSegment(static_cast<std::byte*>(base), g);
  // Release: publishes every field above; pairs with the acquire load in Segment::Open.
  header->init_state.store(static_cast<std::uint32_t>(internal::InitState::kReady),
                           std::memory_order_release);
  munmap(base, g.total_size);
  return absl::OkStatus();
}

}  // namespace

absl::Status CreateChannel(std::string_view raw_name, const ChannelOptions& options) {
  if (absl::Status s = ValidateName(raw_name); !s.ok()) return s;
  const std::string name = CanonicalName(raw_name);
  absl::StatusOr<internal::Geometry> geometry = GeometryOf(name, options);
  if (!geometry.ok()) return geometry.status();
  absl::StatusOr<int> fd = CreateExclusive(name, options.reclaim_stale);
  if (!fd.ok()) return fd.status();
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{*fd};
  absl::Status status;
  // Openers see the init lock held while we initialise (see Segment::Open).
  if (!internal::TryLockByte(*fd, internal::kInitLockOffset)) {
    status = absl::InternalError(absl::StrCat(internal::Prefix(name), "cannot take the init lock"));
  } else {
    status = SizeAndInitialize(*fd, name, *geometry, options.mode);
  }
  if (!status.ok()) {
    shm_unlink(name.c_str());
    return status;
  }
  internal::UnlockByte(*fd, internal::kInitLockOffset);
  return absl::OkStatus();
}

absl::Status RemoveChannel(std::string_view raw_name) {
  if (absl::Status s = ValidateName(raw_name); !s.ok()) return s;
  const std::string name = CanonicalName(raw_name);
  if (shm_unlink(name.c_str()) != 0) return internal::ErrnoStatus(errno, name, "cannot remove");
  return absl::OkStatus();
}

}  // namespace shmring
