// mpmc.h — multi-producer multi-consumer channel: fixed-size slots, competing consumers.
//
//   // master process                            // each worker process
//   auto producer = shmring::MpmcProducer::Attach("/jobs");
//   producer->send(job_bytes, deadline);         auto consumer =
//   shmring::MpmcConsumer::Attach("/jobs");
//                                                shmring::Frame f = consumer->read(deadline);
//                                                run(f.data); consumer->release();
//
// Every committed frame is delivered to exactly one consumer; frames of one producer arrive in
// the order that producer committed them. A frame's sequence number is its ticket in the ring
// (0, 1, 2, ... per channel, across all producers), so a gap in what consumers see together is a
// claim abandoned by a producer that died between claim and commit: such a slot is skipped as
// soon as the owner is known dead (its liveness lock is gone), and counted.
//
// Any number of producers and consumers (up to the channel's max_endpoints) attach at once, each
// in any process. Each endpoint belongs to the thread and process that attached it; do not use
// it in a child after fork().
//
// Crashes: a producer killed between claim and commit costs its one slot (a counted gap, skipped
// as soon as its liveness lock is gone; a stopped producer is only slow, never dead). A consumer
// killed while it holds a frame (read, not released) does not lose it: a live consumer adopts it
// and it is delivered once more (Frame::redelivered, counted as redelivered) — the only case in
// which a frame is delivered twice, and then it may arrive after later frames of its producer.
// End-of-stream waits for such frames: no consumer sees kClosed while a frame is held.
#ifndef SHMRING_MPMC_H_
#define SHMRING_MPMC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shmring/channel.h"
#include "shmring/result.h"

namespace shmring {
namespace internal {
struct MpmcProducerState;
struct MpmcConsumerState;
}  // namespace internal

// MpmcProducer: one of the writing ends of an MPMC channel.
class MpmcProducer {
 public:
  // Attach opens the channel `name` and takes a free endpoint entry. Errors: NotFound,
  // InvalidArgument, PermissionDenied, FailedPrecondition (not an MPMC channel, ABI mismatch),
  // ResourceExhausted (max_endpoints live endpoints attached), DataLoss, DeadlineExceeded.
  static absl::StatusOr<MpmcProducer> Attach(std::string_view name,
                                             const EndpointOptions& options = {});
  MpmcProducer(MpmcProducer&&) noexcept;
  MpmcProducer& operator=(MpmcProducer&&) noexcept;
  ~MpmcProducer();  // aborts an outstanding claim (visible as an abandoned slot), detaches

  // Same contracts as SpscProducer: try_claim returns a span of `size` bytes in a slot
  // (kWouldBlock if every slot is taken, kTooLarge if size > max_frame(), kClosed).
  [[nodiscard]] Claim try_claim(std::size_t size);
  [[nodiscard]] Claim claim(std::size_t size, absl::Time deadline);
  // commit publishes the claimed slot. It returns kAbandoned if the channel took this endpoint
  // for dead (its lock was lost) and skipped the slot. Without an outstanding claim it does
  // nothing and returns kOk. A frame claimed before close() may still be committed.
  Result commit();
  Result commit(std::size_t size);
  // abort gives the claimed slot up; consumers skip it (its ticket is a counted gap).
  void abort();
  [[nodiscard]] Result try_send(std::span<const std::byte> payload);
  [[nodiscard]] Result send(std::span<const std::byte> payload, absl::Time deadline);
  // close marks end-of-stream for the whole channel at once: every producer's later claims
  // return kClosed; consumers drain, then get kClosed. For several producers that each end their
  // part, use finish() instead.
  void close();
  // finish ends this producer's part of the stream: its later claims return kClosed (an
  // outstanding claim is aborted). The stream ends (consumers drain, then get kClosed) once every
  // producer attached to the channel has finished, detached or died — a producer that dies
  // without finishing does not hold the stream open once another one finished (its liveness lock
  // is gone; consumers notice within a few ms). Only producers attached at that moment count:
  // attach every producer before the first one can finish. A producer that attaches after the
  // stream ended gets kClosed from every claim. Idempotent. Cost: a pass over the endpoint table
  // (one fcntl per unfinished producer) and a wake-up of sleeping consumers.
  void finish();
  // counters returns the channel's statistics (all endpoints, by role): no syscall, a pass over
  // the endpoint table. See ReadChannelCounters (channel.h).
  ChannelCounters counters() const;

  std::size_t max_frame() const;
  std::string_view name() const;

 private:
  explicit MpmcProducer(std::unique_ptr<internal::MpmcProducerState> state);
  std::unique_ptr<internal::MpmcProducerState> state_;
};

// MpmcConsumer: one of the competing reading ends of an MPMC channel.
class MpmcConsumer {
 public:
  static absl::StatusOr<MpmcConsumer> Attach(std::string_view name,
                                             const EndpointOptions& options = {});
  MpmcConsumer(MpmcConsumer&&) noexcept;
  MpmcConsumer& operator=(MpmcConsumer&&) noexcept;
  // ~MpmcConsumer detaches. A held (unreleased) frame stays in its slot and is handed to another
  // consumer, as after a crash: when producers are stuck behind it, or at end-of-stream.
  ~MpmcConsumer();

  // Same contracts as SpscConsumer. kClosed once the stream ended (close(), or every producer
  // finished), every committed frame was dequeued, and no frame is held by any consumer: while
  // another consumer holds one (read, not released), try_read returns kWouldBlock and read waits
  // (kTimeout at its deadline), because that consumer may still die and its frame then comes to
  // one of the waiting consumers (Frame::redelivered set) — within a few ms of the death. (A
  // consumer's own held frame is returned again by read/try_read until it is released.) Sequence
  // numbers a consumer sees increase, except for a redelivered frame.
  [[nodiscard]] Frame try_read();
  [[nodiscard]] Frame read(absl::Time deadline);
  void release();
  [[nodiscard]] Received try_receive(std::span<std::byte> buffer);
  [[nodiscard]] Received receive(std::span<std::byte> buffer, absl::Time deadline);
  // counters: as MpmcProducer::counters.
  ChannelCounters counters() const;

  std::size_t max_frame() const;
  std::string_view name() const;

 private:
  explicit MpmcConsumer(std::unique_ptr<internal::MpmcConsumerState> state);
  std::unique_ptr<internal::MpmcConsumerState> state_;
};

}  // namespace shmring

#endif  // SHMRING_MPMC_H_
