#include "stale.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "layout.h"
#include "segment.h"

namespace shmring::internal {

absl::StatusOr<StaleVerdict> JudgeStaleness(int fd, std::string_view name) {
  StaleVerdict v;
  if (fstat(fd, &v.st) != 0) return ErrnoStatus(errno, name, "fstat failed");
  if (!S_ISREG(v.st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(Prefix(name), "not a regular shm object"));
  }
  const std::uint64_t size = static_cast<std::uint64_t>(v.st.st_size);
  SegmentHeader header;
  if (size < sizeof(header) ||
      pread(fd, static_cast<void*>(&header), sizeof(header), 0) != sizeof(header)) {
    v.staleness = Staleness::kEmpty;
    return v;
  }
  if (header.magic == 0) {
    v.staleness = Staleness::kEmpty;
    return v;
  }
  if (header.magic != kMagic) {
    v.staleness = Staleness::kForeign;
    return v;
  }
  // Relaxed is enough: we hold the init lock, so the creator is done (its lock release and our
  // lock acquisition are system calls that order its writes before our read).
  if (header.init_state.load(std::memory_order_relaxed) !=
      static_cast<std::uint32_t>(InitState::kReady)) {
    v.staleness = Staleness::kCreatorDied;
    return v;
  }
  absl::StatusOr<Geometry> g = ValidateHeader(name, header, size);
  if (!g.ok()) {
    v.staleness = Staleness::kInvalid;
    v.why = g.status();
    return v;
  }
  v.staleness = Staleness::kIdle;
  for (std::uint32_t i = 0; i < g->max_endpoints; ++i) {
    if (IsByteLocked(fd, kEndpointLockBase + i)) {
      v.staleness = Staleness::kLive;
      return v;
    }
    std::uint32_t role = 0;
    const off_t at = static_cast<off_t>(g->endpoints_offset + i * sizeof(EndpointEntry) +
                                        offsetof(EndpointEntry, role));
    if (pread(fd, &role, sizeof(role), at) != sizeof(role)) {
      v.staleness = Staleness::kEmpty;  // shrank under us: not a usable segment any more
      return v;
    }
    if (role != static_cast<std::uint32_t>(Role::kNone)) v.staleness = Staleness::kDeadOwner;
  }
  return v;
}

absl::StatusOr<bool> UnlinkIfSame(std::string_view name, const struct stat& judged) {
  const std::string canonical(name);
  struct stat by_name;
  const std::string path = absl::StrCat(kShmDirectory, AV(canonical));
  if (stat(path.c_str(), &by_name) != 0 || by_name.st_ino != judged.st_ino ||
      by_name.st_dev != judged.st_dev) {
    return false;  // gone, or somebody replaced it
  }
  if (shm_unlink(canonical.c_str()) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, name, "cannot remove");
  }
  return true;
}

absl::StatusOr<bool> CollectIfStale(std::string_view canonical_name, bool dry_run) {
  const std::string name(canonical_name);
  const int fd = shm_open(name.c_str(), O_RDWR | O_NONBLOCK, 0);
  if (fd < 0) return false;
  struct Closer {
    int fd;
    ~Closer() { close(fd); }  // also drops the init lock, after any unlink
  } closer{fd};
  if (!TryLockByte(fd, kInitLockOffset)) return false;  // a live creator or another gc
  absl::StatusOr<StaleVerdict> v = JudgeStaleness(fd, name);
  if (!v.ok() || !RemovedByGc(v->staleness)) return false;
  if (dry_run) return true;
  return UnlinkIfSame(name, v->st);
}

absl::Status CheckRemovable(std::string_view canonical_name) {
  const std::string name(canonical_name);
  const int fd = shm_open(name.c_str(), O_RDONLY | O_NONBLOCK, 0);
  if (fd < 0) return absl::OkStatus();  // the unlink reports what is wrong
  std::uint64_t magic = 0;
  const ssize_t n = pread(fd, &magic, sizeof(magic), 0);
  close(fd);
  if (n > 0 && magic != 0 && magic != kMagic) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%snot a shmring segment (magic 0x%016x); not removing it", Prefix(name), magic));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListShmObjects() {
  DIR* dir = opendir(kShmDirectory);
  if (dir == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot list ", kShmDirectory, ": ", std::strerror(errno)));
  }
  std::vector<std::string> names;
  while (const dirent* e = readdir(dir)) {
    const std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace shmring::internal
