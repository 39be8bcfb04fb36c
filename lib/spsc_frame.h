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

// FrameReadyWord is the ready word (FrameHeader::sequence, see kFrameLapBit in layout.h) of the
// header slot at `offset` of the data area. Precondition: offset is a multiple of kFrameAlign and
// at most capacity - sizeof(FrameHeader), so the word is aligned and inside the ring.
inline AtomicU64& FrameReadyWord(std::byte* data, std::uint64_t offset) {
  return *reinterpret_cast<AtomicU64*>(data + offset + offsetof(FrameHeader, sequence));
}

// ReadyWordFor is the ready word of a frame with `sequence` at byte `position` of a ring of
// `capacity` bytes (a power of two): the sequence number and the position's lap parity.
inline std::uint64_t ReadyWordFor(std::uint64_t sequence, std::uint64_t position,
                                  std::uint64_t capacity) {
  return (position & capacity) != 0 ? sequence | kFrameLapBit : sequence;
}

// IsReadyWord tells whether `word`, loaded from the slot at `position`, says that a committed
// frame starts there (layout.h, kFrameLapBit, says why nothing stale passes).
inline bool IsReadyWord(std::uint64_t word, std::uint64_t position, std::uint64_t capacity) {
  return word != kFrameNotReady && ((word & kFrameLapBit) != 0) == ((position & capacity) != 0);
}

// StoreFrameHeader writes the header of a frame at byte `position`: length and flags first, then
// the ready word `ready` (ReadyWordFor, or kFrameNotReady to withhold the frame) with a release
// store: the commit point of the frame, paired with the acquire load of the ready word by
// whoever decodes the frame.
inline void StoreFrameHeader(std::byte* data, std::uint64_t capacity, std::uint64_t position,
                             std::uint32_t length, std::uint32_t flags, std::uint64_t ready) {
  const std::uint64_t offset = position & (capacity - 1);
  const std::uint32_t words[2] = {length, flags};
  std::memcpy(data + offset, words, sizeof(words));
  FrameReadyWord(data, offset).store(ready, std::memory_order_release);
}

struct DecodedFrame {
  enum class Kind { kFrame, kPadding, kCorrupted } kind = Kind::kCorrupted;
  std::uint64_t payload_offset = 0;  // offset of the payload in the data area
  std::uint32_t length = 0;
  std::uint32_t flags = 0;
  std::uint64_t sequence = 0;       // the ready word without its lap bit
  std::uint64_t next_position = 0;  // position just after this frame (or padding)
};

// DecodeFrameAt decodes the frame at byte `position` of a ring of `capacity` bytes (a power of
// two) whose published data ends at `limit` (the consumer, which learns of frames from their
// ready words, passes position + capacity: the most the producer may have written). Preconditions
// (checked by the caller on its local copies): position < limit and limit - position <= capacity.
// The header is copied once, so a peer that rewrites it meanwhile cannot make the checks and the
// use disagree. Every returned frame lies inside [position, limit) and inside the data area,
// without wrapping.
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
  out.sequence = header.sequence & ~kFrameLapBit;
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
