// libFuzzer target: segment header validation. Any bytes, any claimed object size: ValidateHeader
// must return a status (never crash or read out of bounds), and when it accepts, the geometry it
// returns must lie inside the object.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "segment.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shmring::internal;
  SegmentHeader header{};
  std::uint64_t object_size = 0;
  if (size >= sizeof(std::uint64_t)) {
    std::memcpy(&object_size, data, sizeof(object_size));
    data += sizeof(object_size);
    size -= sizeof(object_size);
  }
  std::memcpy(static_cast<void*>(&header), data, size < sizeof(header) ? size : sizeof(header));
  auto geometry = ValidateHeader("/fuzz", header, object_size);
  if (geometry.ok()) {
    const Geometry& g = *geometry;
    if (g.total_size > object_size || g.data_offset + g.data_size != g.total_size ||
        g.endpoints_offset + std::uint64_t{g.max_endpoints} * sizeof(EndpointEntry) >
            g.data_offset ||
        g.control_offset + sizeof(ControlBlock) > g.endpoints_offset) {
      std::abort();  // accepted a geometry that does not fit: a validation bug
    }
  }
  return 0;
}
