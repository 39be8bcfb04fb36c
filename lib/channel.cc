// channel.cc — channel-level actions any process may take without attaching as an endpoint:
// closing a channel, asking its kind, sizing MPMC slots; and the protocol step every ring shares
// for end-of-stream (PublishClose).
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "endpoint.h"
#include "futex.h"
#include "layout.h"
#include "platform.h"
#include "segment.h"
#include "shmring/channel.h"

namespace shmring {

namespace internal {

void PublishClose(ControlBlock& control, std::uint32_t how) {
  std::uint32_t open = kOpen;
  // seq_cst (a release at least): pairs with the SPSC consumer's acquire load [C3] (spsc.cc) and
  // with the MPMC claim's seq_cst re-check [P4] and end-of-stream check [E1] (mpmc.cc, [P8]);
  // everything committed before is visible at end-of-stream. A CAS from open: the first to end
  // the stream says how (close() or every producer finished).
  if (control.closed.compare_exchange_strong(open, how, std::memory_order_seq_cst,
                                             std::memory_order_relaxed)) {
    control.close_time_ns.store(NowRealtimeNs(), std::memory_order_relaxed);
  }
  // Wake unconditionally: close is rare, and nobody may sleep through it. Release: pairs with the
  // waiter's acquire load of the word (endpoint.h, WaitSlow).
  control.data_ready.word.fetch_add(1, std::memory_order_release);
  FutexWake(&control.data_ready.word, INT_MAX);
  control.space_ready.word.fetch_add(1, std::memory_order_release);
  FutexWake(&control.space_ready.word, INT_MAX);
}

}  // namespace internal

namespace {

absl::StatusOr<std::unique_ptr<internal::Segment>> OpenForTool(std::string_view name,
                                                               const EndpointOptions& options,
                                                               internal::Access access) {
  internal::OpenOptions open;
  open.access = access;
  open.deadline = internal::WallNow() + options.open_timeout;
  open.allow_shared_mode = options.allow_shared_mode;
  return internal::Segment::Open(name, open);
}

}  // namespace

absl::Status CloseChannel(std::string_view name, const EndpointOptions& options) {
  auto segment = OpenForTool(name, options, internal::Access::kReadWrite);
  if (!segment.ok()) return segment.status();
  internal::PublishClose(*(*segment)->control());
  return absl::OkStatus();
}

absl::StatusOr<Kind> ChannelKind(std::string_view name, const EndpointOptions& options) {
  auto segment = OpenForTool(name, options, internal::Access::kReadOnly);
  if (!segment.ok()) return segment.status();
  return (*segment)->geometry().kind;
}

std::uint64_t MpmcSlotBytes(std::uint32_t max_frame) {
  return internal::AlignUp(sizeof(internal::MpmcSlotHeader) + max_frame, internal::kSlotAlignment);
}

}  // namespace shmring
