// spsc_frame.h — decoding one SPSC frame from a ring written by a possibly hostile peer.
//
// Shared by the consumer (lib/spsc.cc), shm-inspect's frame dump and the fuzz target, so there
// is one place that decides what a well-formed frame is.
#ifndef SHMRING_LIB_SPSC_FRAME_H_
#define SHMRING_LIB_SPSC_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "layout.h"

namespace shmring::internal {

inline std::uint64_t FrameBytes(std::uint64_t payload) {
  return AlignUp(sizeof(FrameHeader) + payload, kFrameAlign);
}

struct DecodedFrame {
  enum class Kind { kFrame, kPadding, kCorrupted } kind = Kind::kCorrupted;
  std::uint64_t payload_offset = 0;  // offset of the payload in the data area
  std::uint32_t length = 0;
  std::uint32_t flags = 0;
  std::uint64_t sequence = 0;
  std::uint64_t next_position = 0;  // position just after this frame (or padding)
};

// DecodeFrameAt decodes the frame at byte `position` of a ring of `capacity` bytes (a power of
// two) whose published data ends at `limit`. Preconditions (checked by the caller on its local
// copies): position < limit and limit - position <= capacity. The header is copied once, so a
// peer that rewrites it meanwhile cannot make the checks and the use disagree. Every returned
// frame lies inside [position, limit) and inside the data area, without wrapping.
inline DecodedFrame DecodeFrameAt(const std::byte* data, std::uint64_t capacity,
                                  std::uint32_t max_frame, std::uint64_t position,
                                  std::uint64_t limit) {
  DecodedFrame out;
  const std::uint64_t offset = position & (capacity - 1);
  const std::uint64_t to_end = capacity - offset;
  const std::uint64_t available = limit - position;
  if ((offset % kFrameAlign) != 0 || available < sizeof(FrameHeader)) return out;
  FrameHeader header;
  std::memcpy(&header, data + offset, sizeof(header));
  out.length = header.length;
  out.flags = header.flags;
  out.sequence = header.sequence;
  if ((header.flags & kFrameFlagPadding) != 0) {
    if (std::uint64_t{header.length} + sizeof(FrameHeader) != to_end || available < to_end) {
      return out;
    }
    out.kind = DecodedFrame::Kind::kPadding;
    out.next_position = position + to_end;
    return out;
  }
  if (header.length > max_frame) return out;
  const std::uint64_t bytes = FrameBytes(header.length);
  if (bytes > to_end || bytes > available) return out;
  out.kind = DecodedFrame::Kind::kFrame;
  out.payload_offset = offset + sizeof(FrameHeader);
  out.next_position = position + bytes;
  return out;
}

}  // namespace shmring::internal

#endif  // SHMRING_LIB_SPSC_FRAME_H_
