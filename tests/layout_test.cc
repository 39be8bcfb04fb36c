// Unit tests of the segment ABI: geometry computation and header validation (the offsets and
// sizes themselves are checked by static_asserts in lib/layout.h).
#include "layout.h"

#include <catch2/catch.hpp>
#include <cstring>

#include "segment.h"

namespace shmring::internal {
namespace {

void HeaderFor(const Geometry& g, SegmentHeader& h) {
  h.magic = kMagic;
  h.abi_version = kAbiVersion;
  h.header_size = sizeof(SegmentHeader);
  h.kind = static_cast<std::uint32_t>(g.kind);
  h.total_size = g.total_size;
  h.capacity = g.capacity;
  h.max_frame = g.max_frame;
  h.slot_stride = g.slot_stride;
  h.control_offset = g.control_offset;
  h.endpoints_offset = g.endpoints_offset;
  h.max_endpoints = g.max_endpoints;
  h.endpoint_size = sizeof(EndpointEntry);
  h.data_offset = g.data_offset;
  h.data_size = g.data_size;
}

TEST_CASE("SPSC geometry: page-aligned data, frames fit half the ring") {
  auto g = ComputeGeometry("/x", Kind::kSpsc, 4096, 0, 0);
  REQUIRE(g.ok());
  CHECK(g->max_frame == 4096 / 2 - sizeof(FrameHeader));
  CHECK(g->max_endpoints == 2);
  CHECK(g->data_offset % kPageSize == 0);
  CHECK(g->control_offset % kLineSize == 0);
  CHECK(g->endpoints_offset % kLineSize == 0);
  CHECK(g->total_size == g->data_offset + 4096);
  CHECK(AlignUp(sizeof(FrameHeader) + g->max_frame, kFrameAlign) <= 4096 / 2);
}

TEST_CASE("SPSC geometry rejects bad capacities and frames") {
  for (std::uint64_t cap : {0ull, 1000ull, 2048ull, 4097ull, 3ull << 20}) {
    auto g = ComputeGeometry("/x", Kind::kSpsc, cap, 0, 0);
    CHECK(g.status().code() == absl::StatusCode::kInvalidArgument);
  }
  auto g = ComputeGeometry("/x", Kind::kSpsc, 4096, 2048, 0);
  REQUIRE(g.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(g.status().message()).find("max_frame 2048") != std::string::npos);
}

TEST_CASE("MPMC geometry: slot stride covers header and payload") {
  auto g = ComputeGeometry("/x", Kind::kMpmc, 8, 100, 16);
  REQUIRE(g.ok());
  CHECK(g->slot_stride >= sizeof(MpmcSlotHeader) + 100);
  CHECK(g->slot_stride % 64 == 0);
  CHECK(g->data_size == 8 * g->slot_stride);
  CHECK(ComputeGeometry("/x", Kind::kMpmc, 6, 100, 16).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ComputeGeometry("/x", Kind::kMpmc, 8, 100, 0).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateHeader accepts a consistent header and rejects each corruption") {
  auto g = ComputeGeometry("/x", Kind::kSpsc, 1 << 16, 0, 0);
  REQUIRE(g.ok());
  SegmentHeader good{};
  HeaderFor(*g, good);
  REQUIRE(ValidateHeader("/x", good, g->total_size).ok());

  auto code_after = [&](auto mutate, std::uint64_t size) {
    SegmentHeader h;
    std::memcpy(static_cast<void*>(&h), &good, sizeof(h));
    mutate(h);
    return ValidateHeader("/x", h, size).status().code();
  };
  using C = absl::StatusCode;
  CHECK(code_after([](SegmentHeader& h) { h.magic ^= 1; }, g->total_size) ==
        C::kFailedPrecondition);
  CHECK(code_after([](SegmentHeader& h) { h.abi_version = kAbiVersion + 1; }, g->total_size) ==
        C::kFailedPrecondition);
  CHECK(code_after([](SegmentHeader&) {}, g->total_size - 1) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader&) {}, 100) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.kind = 7; }, g->total_size) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.capacity = 3000; }, g->total_size) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.max_frame = 1 << 16; }, g->total_size) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.data_offset += 8; }, g->total_size) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.control_offset = 1 << 30; }, g->total_size) ==
        C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.total_size = 1ull << 50; }, g->total_size) ==
        C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.endpoint_size = 64; }, g->total_size) == C::kDataLoss);
  CHECK(code_after([](SegmentHeader& h) { h.max_endpoints = 5000; }, g->total_size) ==
        C::kDataLoss);
}

TEST_CASE("ValidateHeader messages name the channel and the cause") {
  auto g = ComputeGeometry("/quotes", Kind::kSpsc, 1 << 16, 0, 0);
  REQUIRE(g.ok());
  SegmentHeader h{};
  HeaderFor(*g, h);
  h.abi_version = 9;
  const std::string msg(ValidateHeader("/quotes", h, g->total_size).status().message());
  CHECK(msg.find("'/quotes'") != std::string::npos);
  CHECK(msg.find("ABI version 9") != std::string::npos);
}

}  // namespace
}  // namespace shmring::internal
