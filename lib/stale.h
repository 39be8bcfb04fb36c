// stale.h — the one decision "was this segment left behind by dead processes?", shared by
// ChannelOptions::reclaim_stale (CreateChannel) and `shm-cat gc`, and the one way to unlink a
// segment only if its name still refers to the object that was judged.
//
// The verdict is taken while the caller holds the segment's init lock (TryLockByte at
// kInitLockOffset): no creator, reclaimer or gc acts on the object meanwhile, and a creator that
// is still initialising holds that lock itself, so holding it proves the creator is gone.
// Callers differ only in which verdicts they remove (RemovedByReclaim, RemovedByGc).
#ifndef SHMRING_LIB_STALE_H_
#define SHMRING_LIB_STALE_H_

#include <sys/stat.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shmring::internal {

enum class Staleness {
  kEmpty,        // shorter than a header or zero magic: its creator died before writing it
  kForeign,      // non-zero first bytes that are not the shmring magic: not ours
  kInvalid,      // shmring magic, initialised, but fails ValidateHeader (other ABI, corrupted)
  kCreatorDied,  // shmring magic, never initialised, and nobody holds the init lock
  kLive,         // some endpoint's liveness lock is held
  kDeadOwner,    // no live endpoint; some entry records an owner that died without detaching
  kIdle,         // no live endpoint; every entry is free (never attached, or detached cleanly)
};

struct StaleVerdict {
  Staleness staleness = Staleness::kEmpty;
  absl::Status why;   // kInvalid: the validation error
  struct stat st {};  // the object judged (for UnlinkIfSame)
};

// JudgeStaleness decides what `fd` (an O_RDWR descriptor of shm object `name`) is. Precondition:
// the caller holds the init lock through `fd`. Reads with pread(2) only; changes nothing.
// Errors: fstat failures (ErrnoStatus), FailedPrecondition for an object that is not a regular
// file.
absl::StatusOr<StaleVerdict> JudgeStaleness(int fd, std::string_view name);

// CreateChannel(reclaim_stale) replaces any segment nobody uses; gc removes only segments that
// dead processes provably left behind (docs/tools.md, "gc").
inline bool RemovedByReclaim(Staleness s) {
  return s == Staleness::kEmpty || s == Staleness::kCreatorDied || s == Staleness::kDeadOwner ||
         s == Staleness::kIdle;
}
inline bool RemovedByGc(Staleness s) {
  return s == Staleness::kCreatorDied || s == Staleness::kDeadOwner;
}

// UnlinkIfSame unlinks `name` only if it still refers to the object `judged` describes (same
// device and inode). True if it unlinked it; false if the name is gone or now names another
// object; an error Status if shm_unlink failed otherwise.
absl::StatusOr<bool> UnlinkIfSame(std::string_view name, const struct stat& judged);

// CollectIfStale is `shm-cat gc` for one name: under the init lock, judges the object and, if
// RemovedByGc, unlinks it (UnlinkIfSame) unless `dry_run`. True if it was stale (and, without
// dry_run, removed by this call). Objects that cannot be opened or locked are not stale.
absl::StatusOr<bool> CollectIfStale(std::string_view canonical_name, bool dry_run);

// CheckRemovable refuses (FailedPrecondition) an object whose first bytes are neither the shmring
// magic nor zero: clearly not a shmring segment. A missing, empty or zeroed object passes (a
// segment whose creator died early is removable). For `shm-cat rm`.
absl::Status CheckRemovable(std::string_view canonical_name);

// ListShmObjects: the names of the entries of kShmDirectory ("x" for object "/x"), sorted,
// without "." and "..". Errors: the directory cannot be read (ErrnoStatus-like message).
absl::StatusOr<std::vector<std::string>> ListShmObjects();

}  // namespace shmring::internal

#endif  // SHMRING_LIB_STALE_H_
