// mpmc_fan.h — shmring-bench's many-process MPMC throughput run (P producers, C consumers).
//
// P producer processes each stream `count` frames into one MPMC channel; C consumer processes
// compete for them. Every frame carries (producer id, counter); each consumer checks that the
// counters of every producer increase (per-producer order) and the run checks that every
// producer's frames arrived exactly `count` times with the right counter sum (nothing lost or
// duplicated). Throughput is P * count frames over the time from the start signal to the last
// frame received. Processes are not pinned: with more processes than CPUs the scheduler places
// them, and waiting endpoints must park (spin-only waits would starve the others).
#ifndef SHMRING_BENCH_MPMC_FAN_H_
#define SHMRING_BENCH_MPMC_FAN_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "transport.h"

namespace shmring::bench {

struct FanSpec {
  int producers = 2;
  int consumers = 2;
  std::size_t size = 64;    // bytes per frame, 8 ..  the MPMC slot limit
  std::uint64_t count = 0;  // frames per producer
  Wait wait = Wait::kHybrid;
  int timeout_s = 60;     // the whole run
  std::vector<int> cpus;  // CPUs the processes may run on (empty: inherit the parent's)
};

struct FanResult {
  bool ok = false;
  std::string error;
  std::uint64_t frames = 0;  // producers * count, all verified
  double seconds = 0;
  double msgs_per_s = 0;
  double bytes_per_s = 0;
  double max_consumer_share = 0;  // largest fraction of the frames one consumer received
};

// RunFan forks the producers and consumers, waits for them (killing them all at the timeout)
// and removes the channel it created, also on error.
FanResult RunFan(const FanSpec& spec);

}  // namespace shmring::bench

#endif  // SHMRING_BENCH_MPMC_FAN_H_
