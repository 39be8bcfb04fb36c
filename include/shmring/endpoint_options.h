// endpoint_options.h — how an endpoint attaches and waits (EndpointOptions, WaitMode). Passed to
// SpscProducer/SpscConsumer/MpmcProducer/MpmcConsumer::Attach and to CloseChannel/ChannelKind.
// Also reachable through shmring/result.h, where it used to live.
#ifndef SHMRING_ENDPOINT_OPTIONS_H_
#define SHMRING_ENDPOINT_OPTIONS_H_

#include <cstdint>

#include "absl/time/time.h"

namespace shmring {

// WaitMode: how a blocking call waits for the other side.
enum class WaitMode : std::uint8_t {
  kSpin,    // busy-poll until the deadline: lowest latency, burns a core
  kBlock,   // sleep on the futex at once: no CPU while idle, a wake-up costs a syscall
  kHybrid,  // spin briefly, then yield the CPU between polls, then sleep (default; see
            // EndpointOptions::spin_iterations)
};

// EndpointOptions: how an endpoint attaches and waits.
struct EndpointOptions {
  WaitMode wait = WaitMode::kHybrid;
  // How long a hybrid wait polls before it sleeps, in polls: the first 256 polls spin (a load
  // and a pause instruction each, a few ns to ~40 ns depending on the CPU); each later poll
  // first yields the CPU to other runnable processes (sched_yield) and counts as 32 polls. The
  // default spins ~10 us, then yields ~600 times (a few hundred us on an idle machine).
  std::uint32_t spin_iterations = 20000;
  // How long Attach waits for a channel that is still being initialised by its creator.
  absl::Duration open_timeout = absl::Seconds(5);
  // Accept a channel whose mode has group/other write bits, or which another user owns.
  // Off by default: such a channel can be written by others and is refused.
  bool allow_shared_mode = false;
};

}  // namespace shmring

#endif  // SHMRING_ENDPOINT_OPTIONS_H_
