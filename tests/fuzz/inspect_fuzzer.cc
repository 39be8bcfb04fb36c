// libFuzzer target: shm-inspect's decoder (internal::DecodeSegment, what `shm-inspect NAME`,
// `--json` and `--frames N` print) over an arbitrary object image.
//
// Input: 4 control bytes, then the object's bytes.
//   [0] bit 0: the object "shrank while read": fstat said more bytes than the copy holds
//       bits 1-7: how many more, in 64-byte units
//   [1] frames to decode (--frames N), 0..255
//   [2] preview bytes per frame, 0..255
//   [3] liveness: endpoint i is alive iff bit (i % 8) is set
// Decode must return a status or a snapshot (never crash, never read outside the image: ASan),
// and a snapshot must be consistent with the image it came from.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "inspect.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
  using namespace shmring::internal;
  if (size < 4) return 0;
  const std::uint8_t mode = input[0];
  DecodeOptions options;
  options.max_frames = input[1];
  options.preview_bytes = input[2];
  const std::uint8_t alive_mask = input[3];
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(input + 4), size - 4);
  std::uint64_t object_size = bytes.size();
  if ((mode & 1) != 0) object_size += std::uint64_t{64} * (mode >> 1);

  const auto alive = [alive_mask](std::uint32_t index) {
    return ((alive_mask >> (index % 8)) & 1) != 0;
  };
  absl::StatusOr<Snapshot> snapshot = DecodeSegment("/fuzz", bytes, object_size, alive, options);
  if (!snapshot.ok()) {
    if (snapshot.status().message().empty()) std::abort();  // every error says why
    return 0;
  }
  const Snapshot& s = *snapshot;
  // What Decode accepted lies inside the object, and what it reports fits what it accepted.
  if (s.geometry.total_size > object_size) std::abort();
  if (s.frames.size() > options.max_frames) std::abort();
  for (const FrameSnapshot& f : s.frames) {
    if (f.preview.size() > options.preview_bytes || f.preview.size() > f.length) std::abort();
    if (f.length > s.geometry.max_frame && f.state == FrameSnapshot::State::kCommitted) {
      std::abort();
    }
  }
  if (s.endpoints_alive + s.endpoints_dead > s.geometry.max_endpoints) std::abort();
  return 0;
}
