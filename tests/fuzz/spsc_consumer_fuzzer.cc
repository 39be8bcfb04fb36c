// libFuzzer target: an SPSC consumer facing cursors and ring bytes written by a hostile peer.
//
// Input: 8 bytes read_position, 8 bytes write_position, then the ring's bytes. They are written
// into a real segment; a freshly attached consumer then reads and releases frames until it gets
// anything but kOk. It must never touch memory outside the ring (ASan), never loop forever, and
// every frame it hands out must lie inside the data area. The consumer follows ready words (any
// value but kFrameNotReady) from read_position without loading write_position, except every 256
// empty polls and at end-of-stream (the input's low bit closes the stream). The decoder is also
// driven directly over the same bytes, and a producer then attaches (it adopts the frames marked
// ready past write_position) and sends a few frames.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz_channel.h"
#include "segment.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "spsc_frame.h"

namespace {

constexpr std::uint64_t kCapacity = 4096;

shmring::internal::Segment& Channel() {
  shmring::ChannelOptions options;
  options.capacity = kCapacity;
  return shmring::fuzz::FuzzChannel("spsc", options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
  using namespace shmring::internal;
  Segment& seg = Channel();
  std::uint64_t read_position = 0, write_position = 0;
  if (size >= 16) {
    std::memcpy(&read_position, input, 8);
    std::memcpy(&write_position, input + 8, 8);
    input += 16;
    size -= 16;
  }
  ControlBlock* control = seg.control();
  control->read_position.store(read_position);
  control->write_position.store(write_position);
  control->closed.store(static_cast<std::uint32_t>(size & 1));
  std::byte* ring = seg.data();
  std::memset(ring, 0, kCapacity);
  std::memcpy(ring, input, size < kCapacity ? size : kCapacity);

  // 1. The decoder alone, walking from read_position to write_position like a consumer.
  const std::uint32_t max_frame = seg.geometry().max_frame;
  if (write_position > read_position && write_position - read_position <= kCapacity) {
    std::uint64_t position = read_position;
    while (position < write_position) {
      DecodedFrame f = DecodeFrameAt(ring, kCapacity, max_frame, position, write_position);
      if (f.kind == DecodedFrame::Kind::kCorrupted) break;
      if (f.payload_offset + f.length > kCapacity || f.next_position <= position ||
          f.next_position > write_position) {
        std::abort();
      }
      position = f.next_position;
    }
  }

  shmring::EndpointOptions options;
  options.wait = shmring::WaitMode::kSpin;
  {
    // 2. A real consumer attached to the hostile segment.
    auto consumer = shmring::SpscConsumer::Attach(shmring::fuzz::ChannelName(), options);
    if (!consumer.ok()) std::abort();
    for (int i = 0; i < 1000; ++i) {  // at most kCapacity / 16 frames can be published
      shmring::Frame f = consumer->try_read();
      if (!f.ok()) break;
      const std::byte* begin = f.data.data();
      if (begin < ring || begin + f.data.size() > ring + kCapacity) std::abort();
      unsigned sum = 0;
      for (std::byte b : f.data) sum += static_cast<unsigned>(b);  // ASan checks every byte
      if (sum == 0xFFFFFFFFu) std::abort();  // keeps the loop from being optimised away
      consumer->release();
    }
  }  // the consumer detaches

  // 3. A producer attached to what is left: it walks the frames marked ready past
  // write_position, then sends into the ring it finds.
  auto producer = shmring::SpscProducer::Attach(shmring::fuzz::ChannelName(), options);
  if (!producer.ok()) std::abort();
  for (std::size_t i = 0; i < 4; ++i) {
    const std::size_t n = (size > i ? input[i] : 0) * 4;
    shmring::Claim c = producer->try_claim(n);
    if (!c.ok()) break;
    if (c.data.data() < ring || c.data.data() + c.data.size() > ring + kCapacity) std::abort();
    std::memset(c.data.data(), 0xA5, c.data.size());
    producer->commit();
  }
  return 0;
}
