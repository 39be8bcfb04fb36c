// libFuzzer target: MPMC producers and consumers facing tickets, slot turns, slot headers and an
// endpoint table written by a hostile peer.
//
// Input: 8 bytes read_position, 8 bytes write_position, 4 bytes of flags (bits 0-1: the closed
// word, bit 2: some producer called finish(), bit 3: the producer below finishes at the end), then
// the endpoint table's bytes, then the slot array's bytes (each part zero-filled if the input is
// short). They are written into a real segment; a freshly attached consumer (which may inherit a
// "held" ticket from the entry it takes) reads and releases frames, and a freshly attached
// producer claims and commits, until they get anything but kOk (the consumer polls on through
// kWouldBlock a bounded number of times, so the stall gate opens and the recovery paths run).
// Neither may touch memory outside the segment (ASan), loop forever, or hand out a span outside the
// slot it names.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz_channel.h"
#include "mpmc_internal.h"
#include "segment.h"
#include "shmring/channel.h"
#include "shmring/mpmc.h"

namespace {

constexpr std::uint64_t kSlots = 8;
constexpr std::uint32_t kMaxFrame = 64;
constexpr std::uint32_t kEndpoints = 4;

shmring::internal::Segment& Channel() {
  shmring::ChannelOptions options;
  options.kind = shmring::Kind::kMpmc;
  options.capacity = kSlots;
  options.max_frame = kMaxFrame;
  options.max_endpoints = kEndpoints;
  return shmring::fuzz::FuzzChannel("mpmc", options);
}

// Take: copies up to `n` bytes of the input into `out` (zero-filling the rest).
void Take(const std::uint8_t*& input, std::size_t& size, void* out, std::size_t n) {
  const std::size_t k = size < n ? size : n;
  std::memset(out, 0, n);
  if (k > 0) std::memcpy(out, input, k);
  input += k;
  size -= k;
}

bool InSlots(const std::byte* p, std::size_t n, const std::byte* data, std::uint64_t data_size) {
  return p >= data && n <= data_size && static_cast<std::uint64_t>(p - data) <= data_size - n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
  using namespace shmring::internal;
  Segment& seg = Channel();
  const Geometry& g = seg.geometry();
  std::uint64_t read_position = 0, write_position = 0;
  std::uint32_t flags = 0;
  Take(input, size, &read_position, 8);
  Take(input, size, &write_position, 8);
  Take(input, size, &flags, 4);
  ControlBlock* control = seg.control();
  control->read_position.store(read_position);
  control->write_position.store(write_position);
  control->closed.store(flags & 3);
  control->finishing.store((flags >> 2) & 1);
  Take(input, size, seg.endpoint(0), std::size_t{g.max_endpoints} * sizeof(EndpointEntry));
  std::byte* data = seg.data();
  Take(input, size, data, g.data_size);

  shmring::EndpointOptions options;
  options.wait = shmring::WaitMode::kSpin;
  {
    auto consumer = shmring::MpmcConsumer::Attach(shmring::fuzz::ChannelName(), options);
    // Every entry may look taken: then ResourceExhausted is the right answer.
    if (consumer.ok()) {
      for (int i = 0, idle = 0; i < 64 && idle < static_cast<int>(2 * kStallPolls); ++i) {
        shmring::Frame f = consumer->try_read();
        if (f.result == shmring::Result::kWouldBlock) {
          ++idle;
          --i;
          continue;
        }
        if (!f.ok()) break;
        if (f.data.size() > kMaxFrame ||
            !InSlots(f.data.data(), f.data.size(), data, g.data_size)) {
          std::abort();
        }
        unsigned sum = 0;
        for (std::byte b : f.data) sum += static_cast<unsigned>(b);  // ASan checks every byte
        if (sum == 0xFFFFFFFFu) std::abort();
        consumer->release();
      }
    }
  }
  {
    auto producer = shmring::MpmcProducer::Attach(shmring::fuzz::ChannelName(), options);
    if (producer.ok()) {
      for (int i = 0; i < 16; ++i) {
        shmring::Claim c = producer->try_claim(kMaxFrame);
        if (!c.ok()) break;
        if (c.data.size() != kMaxFrame ||
            !InSlots(c.data.data(), c.data.size(), data, g.data_size)) {
          std::abort();
        }
        std::memset(c.data.data(), 0xA5, c.data.size());
        if (producer->commit() != shmring::Result::kOk) break;
      }
      if ((flags & 8) != 0) producer->finish();
    }
  }
  return 0;
}
