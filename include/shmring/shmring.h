// shmring.h — umbrella header: lock-free shared-memory channels between processes.
//
// A channel is a POSIX shm object holding a ring: SPSC (one producer, one consumer, variable-length
// frames), MPMC (many producers, competing consumers, fixed-size slots) or broadcast (one
// publisher, many subscribers that each read every frame). The data path is a few
// loads and stores in shared memory; idle endpoints sleep on a futex in the segment and every
// blocking call takes a deadline. Every frame carries a sequence number.
//
// clang-format off
//   #include "shmring/shmring.h"
//
//   // Process A: create the channel and produce.
//   shmring::ChannelOptions options;           // SPSC, 1 MiB ring by default
//   absl::Status created = shmring::CreateChannel("/ticks", options);
//   absl::StatusOr<shmring::SpscProducer> producer = shmring::SpscProducer::Attach("/ticks");
//   if (!producer.ok()) return producer.status();
//   const char tick[] = "EURUSD 1.0842";
//   shmring::Result r = producer->send(std::as_bytes(std::span(tick)), absl::Seconds(1));
//   producer->close();                         // end of stream
//
//   // Process B: consume, zero-copy.
//   absl::StatusOr<shmring::SpscConsumer> consumer = shmring::SpscConsumer::Attach("/ticks");
//   for (;;) {
//     shmring::Frame frame = consumer->read(absl::InfiniteFuture());
//     if (frame.result == shmring::Result::kClosed) break;   // drained and closed
//     handle(frame.sequence, frame.data);                    // bytes in place, in the ring
//     consumer->release();
//   }
//   absl::Status removed = shmring::RemoveChannel("/ticks");
// clang-format on
// (tests/header_examples_test.cc compiles and runs this example.)
#ifndef SHMRING_SHMRING_H_
#define SHMRING_SHMRING_H_

#include "shmring/broadcast.h"  // IWYU pragma: export
#include "shmring/channel.h"    // IWYU pragma: export
#include "shmring/mpmc.h"       // IWYU pragma: export
#include "shmring/result.h"     // IWYU pragma: export
#include "shmring/spsc.h"       // IWYU pragma: export
#include "shmring/typed.h"      // IWYU pragma: export

#endif  // SHMRING_SHMRING_H_
