// libFuzzer target: a broadcast subscriber facing positions and ring bytes written by a hostile
// peer.
//
// Input: 8 bytes write_position, 8 bytes oldest_position, 8 bytes next_write_seq, 1 byte of flags
// (bit 0: closed; bit 1: start at the oldest frame; bit 2: copying receive; bit 3: release with
// release_deferred, publishing every 4th frame with release()), then the ring's
// bytes. They are written into a real segment; a freshly attached subscriber then reads until it
// gets anything but kOk or kLapped. It must never touch memory outside the ring (ASan), never loop
// forever, and every frame it hands out must lie inside the data area.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_channel.h"
#include "segment.h"
#include "shmring/broadcast.h"
#include "shmring/channel.h"

namespace {

constexpr std::uint64_t kCapacity = 4096;

shmring::internal::Segment& Channel() {
  shmring::ChannelOptions options;
  options.kind = shmring::Kind::kBroadcast;
  options.capacity = kCapacity;
  options.max_endpoints = 2;
  options.overflow = shmring::OverflowPolicy::kOverwrite;
  return shmring::fuzz::FuzzChannel("broadcast", options);
}

std::uint64_t Take64(const std::uint8_t*& input, std::size_t& size) {
  std::uint64_t v = 0;
  if (size >= 8) {
    std::memcpy(&v, input, 8);
    input += 8;
    size -= 8;
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
  using namespace shmring::internal;
  Segment& seg = Channel();
  const std::uint64_t write_position = Take64(input, size);
  const std::uint64_t oldest_position = Take64(input, size);
  const std::uint64_t next_seq = Take64(input, size);
  std::uint8_t flags = 0;
  if (size > 0) {
    flags = *input++;
    --size;
  }
  ControlBlock* control = seg.control();
  control->write_position.store(write_position);
  control->oldest_position.store(oldest_position);
  control->next_write_seq.store(next_seq);
  control->published_seq.store(next_seq);
  control->closed.store(flags & 1);
  std::byte* ring = seg.data();
  std::memset(ring, 0, kCapacity);
  std::memcpy(ring, input, size < kCapacity ? size : kCapacity);

  shmring::EndpointOptions options;
  options.wait = shmring::WaitMode::kSpin;
  const auto start = (flags & 2) != 0 ? shmring::StartAt::kOldest : shmring::StartAt::kLatest;
  auto sub = shmring::BroadcastSubscriber::Attach(shmring::fuzz::ChannelName(), start, options);
  if (!sub.ok()) std::abort();
  std::vector<std::byte> buffer(sub->max_frame());
  for (int i = 0; i < 1000; ++i) {  // at most kCapacity / 16 frames fit, plus laps
    if ((flags & 4) != 0) {
      shmring::Received r = sub->try_receive(buffer);
      if (r.result != shmring::Result::kOk && r.result != shmring::Result::kLapped) break;
      if (r.size > buffer.size()) std::abort();
      continue;
    }
    shmring::Frame f = sub->try_read();
    if (f.result == shmring::Result::kLapped) continue;
    if (!f.ok()) break;
    const std::byte* begin = f.data.data();
    if (begin < ring || begin + f.data.size() > ring + kCapacity) std::abort();
    unsigned sum = 0;
    for (std::byte b : f.data) sum += static_cast<unsigned>(b);  // ASan checks every byte
    if (sum == 0xFFFFFFFFu) std::abort();
    if ((flags & 8) != 0 && (i & 3) != 3) {
      (void)sub->release_deferred();
    } else {
      (void)sub->release();
    }
  }
  return 0;
}
