// The SPSC ring between two threads of one process (each with its own endpoint; the process
// shares one mapping, so ThreadSanitizer sees every access to the ring). Built for the TSan run.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

TEST_CASE("threads: frames of varying size, zero-copy, every wait mode, close") {
  auto mode = GENERATE(WaitMode::kSpin, WaitMode::kBlock, WaitMode::kHybrid);
  testing::ScopedName name("threads");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  EndpointOptions eo;
  eo.wait = mode;
  eo.spin_iterations = 500;
  auto producer = SpscProducer::Attach(name, eo);
  auto consumer = SpscConsumer::Attach(name, eo);
  REQUIRE(producer.ok());
  REQUIRE(consumer.ok());
  const char* scale = std::getenv("SHMRING_TEST_SCALE");
  const std::uint64_t count =
      scale ? static_cast<std::uint64_t>(100000 * std::atof(scale)) + 1000 : 100000;
  std::thread writer([&] {
    for (std::uint64_t i = 0; i < count; ++i) {
      Claim c = producer->claim(8 + i % 600, absl::Now() + absl::Seconds(60));
      if (!c.ok()) return;
      std::memcpy(c.data.data(), &i, 8);
      std::memset(c.data.data() + 8, static_cast<int>(i), c.data.size() - 8);
      producer->commit();
    }
    producer->close();
  });
  std::uint64_t n = 0, bad = 0;
  for (;;) {
    Frame f = consumer->read(absl::Now() + absl::Seconds(60));
    if (f.result == Result::kClosed) break;
    REQUIRE(f.ok());
    std::uint64_t v;
    std::memcpy(&v, f.data.data(), 8);
    bad += v != n || f.sequence != n || f.data.size() != 8 + n % 600 ||
           (f.data.size() > 8 && f.data[f.data.size() - 1] != static_cast<std::byte>(n));
    consumer->release();
    ++n;
  }
  writer.join();
  CHECK(n == count);
  CHECK(bad == 0);
}

}  // namespace
}  // namespace shmring
