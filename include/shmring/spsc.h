// spsc.h — single-producer single-consumer channel: variable-length frames, zero-copy.
//
// clang-format off
//   // Process A: write a frame in place.
//   auto producer = shmring::SpscProducer::Attach("/quotes");
//   shmring::Claim c = producer->claim(64, absl::InfiniteFuture());
//   if (c.ok()) {
//     std::memcpy(c.data.data(), bytes, 64);
//     producer->commit();
//   }
//
//   // Process B: read it in place.
//   auto consumer = shmring::SpscConsumer::Attach("/quotes");
//   shmring::Frame f = consumer->read(absl::Now() + absl::Seconds(1));
//   if (f.ok()) {
//     use(f.data, f.sequence);  // the bytes in the ring, valid until release()
//     consumer->release();
//   }
// clang-format on
// (tests/header_examples_test.cc compiles and runs these examples.)
//
// Roles: at most one SpscProducer and one SpscConsumer are attached to a channel at a time, each
// in any process. A second Attach for a taken role fails with FailedPrecondition naming the pid
// that holds it — unless that process is dead, then the newcomer takes the role over: a new
// consumer continues with the first frame the dead one had not released, a new producer continues
// the sequence numbers. An endpoint belongs to the thread and process that attached it: do not
// share one between threads without a lock, and do not use it in a child after fork().
//
// Cost: try_claim/commit/try_read/release are a handful of loads and stores on cache lines owned
// by their side, plus one locked instruction per commit/release so a sleeping peer is never missed
// (one per batch with commit_deferred/release_deferred); they make a syscall only when the peer
// sleeps.
// Blocking forms spin and/or sleep per EndpointOptions::wait.
#ifndef SHMRING_SPSC_H_
#define SHMRING_SPSC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"  // IWYU pragma: export (absl::Now() for deadlines)
#include "absl/time/time.h"
#include "shmring/result.h"

namespace shmring {
namespace internal {
struct SpscProducerState;
struct SpscConsumerState;
}  // namespace internal

// ReleaseMark: a point in a consumer's stream up to which its releases may be published (see
// SpscConsumer::release_held). Opaque: only the consumer that returned it interprets it.
struct ReleaseMark {
  std::uint64_t position = 0;       // ring position after the last frame the mark covers
  std::uint64_t next_sequence = 0;  // sequence number of the first frame it does not cover
};

// SpscProducer: the writing end of an SPSC channel.
class SpscProducer {
 public:
  // Attach opens the channel `name` and takes the producer role. Both Attach calls prefault the
  // whole ring into this process's page tables, so the data path never takes a page fault.
  // Errors: NotFound, InvalidArgument (bad name), PermissionDenied, FailedPrecondition (not an
  // SPSC channel, ABI mismatch, role held by a live process), DataLoss (truncated/corrupted),
  // DeadlineExceeded (creator still initialising after options.open_timeout).
  static absl::StatusOr<SpscProducer> Attach(std::string_view name,
                                             const EndpointOptions& options = {});

  SpscProducer(SpscProducer&&) noexcept;
  SpscProducer& operator=(SpscProducer&&) noexcept;
  ~SpscProducer();  // detaches: the role becomes free; does not close the stream

  // try_claim reserves room for a frame of `size` payload bytes and returns a writable span of
  // exactly `size` bytes inside the ring. kWouldBlock if the ring is full, kTooLarge if size >
  // max_frame(), kClosed if the channel is closed. At most one claim is outstanding: a claim made
  // while one is outstanding drops it (as abort() would) and claims anew.
  [[nodiscard]] Claim try_claim(std::size_t size);
  // claim waits for room until `deadline` (absl::InfiniteFuture() waits forever): kTimeout then.
  [[nodiscard]] Claim claim(std::size_t size, absl::Time deadline);
  // The same, waiting at most `timeout` (absl::InfiniteDuration() waits forever).
  [[nodiscard]] Claim claim(std::size_t size, absl::Duration timeout) {
    return claim(size, DeadlineAfter(timeout));
  }
  // commit publishes the claimed frame (all of it, or its first `size` bytes) to the consumer and
  // wakes it if it sleeps. Returns kOk (an SPSC commit cannot fail; it returns a Result like
  // MpmcProducer::commit so code can be written for both). Without an outstanding claim it does
  // nothing and returns kOk.
  Result commit();
  Result commit(std::size_t size);
  // commit_deferred commits the claimed frame (its sequence number is taken) without publishing
  // it yet: the consumer sees it, with every frame deferred before it, at the next commit() or
  // flush(). One publication then covers the whole batch — a single store and one locked
  // instruction instead of one per frame — which is what a producer streaming bursts of small
  // frames wants. A claim that finds the ring full, close() and the destructor publish deferred
  // frames first, and a commit_deferred that leaves a quarter of the ring deferred publishes. Until
  // then the consumer, shm-inspect and a producer taking over after a crash do not see them: call
  // flush() before going idle.
  //
  // clang-format off
  //   for (const Msg& m : burst) {
  //     Claim c = p.claim(m.size(), deadline);
  //     copy(m, c.data);
  //     p.commit_deferred();
  //   }
  //   p.flush();
  // clang-format on
  void commit_deferred();
  void commit_deferred(std::size_t size);
  // flush publishes every deferred frame and wakes the consumer if it sleeps; a no-op (no store,
  // no locked instruction) when nothing is deferred.
  void flush();
  // abort drops the outstanding claim; no sequence number is used.
  void abort();

  // try_send/send: claim + copy + commit.
  [[nodiscard]] Result try_send(std::span<const std::byte> payload);
  [[nodiscard]] Result send(std::span<const std::byte> payload, absl::Time deadline);
  [[nodiscard]] Result send(std::span<const std::byte> payload, absl::Duration timeout) {
    return send(payload, DeadlineAfter(timeout));
  }

  // close marks end-of-stream: the consumer reads what was committed, then gets kClosed.
  // Any outstanding claim is aborted. Further claims return kClosed.
  void close();

  std::size_t max_frame() const;
  std::uint64_t next_sequence() const;  // sequence number of the next committed frame
  std::string_view name() const;

 private:
  explicit SpscProducer(std::unique_ptr<internal::SpscProducerState> state);
  std::unique_ptr<internal::SpscProducerState> state_;
};

// SpscConsumer: the reading end of an SPSC channel.
class SpscConsumer {
 public:
  // Attach opens the channel `name` and takes the consumer role. Errors as SpscProducer::Attach.
  static absl::StatusOr<SpscConsumer> Attach(std::string_view name,
                                             const EndpointOptions& options = {});

  SpscConsumer(SpscConsumer&&) noexcept;
  SpscConsumer& operator=(SpscConsumer&&) noexcept;
  ~SpscConsumer();  // detaches; an unreleased frame stays unread for the next consumer

  // try_read returns the next frame in place (valid until release()). kWouldBlock if the ring is
  // empty, kClosed once the channel is closed and drained, kCorrupted if the segment holds an
  // impossible frame. Calling it again before release() returns the same frame.
  [[nodiscard]] Frame try_read();
  // read waits for a frame until `deadline`: kTimeout then.
  [[nodiscard]] Frame read(absl::Time deadline);
  // The same, waiting at most `timeout` (absl::InfiniteDuration() waits forever).
  [[nodiscard]] Frame read(absl::Duration timeout) { return read(DeadlineAfter(timeout)); }
  // release frees the frame returned by the last successful read, letting the producer reuse its
  // room, and wakes a producer sleeping on a full ring. It publishes the deferred releases
  // (release_deferred) with it — also when no frame is held, which is how a batch ended with
  // release_deferred() is handed back without another read.
  void release();
  // release_deferred frees the frame for this consumer (the next read returns the next frame)
  // without publishing the room to the producer yet: the next release(), or a read that finds the
  // ring empty, or the destructor publishes every deferred release at once — one store and one
  // locked instruction for the batch (a release_deferred that leaves a quarter of the ring
  // deferred publishes too). Until then the room stays taken, and a consumer that takes
  // over after a crash starts again at the first frame whose release was not published (those
  // frames are delivered again).
  void release_deferred();
  // release_held frees the frame for this consumer (the next read returns the next frame) but
  // keeps it unread for everyone else — the producer cannot reuse its room, and a consumer that
  // takes over after a crash gets it again — until publish_release() is given the returned mark
  // or a later one. Nothing publishes past a held frame: not release(), release_deferred()'s
  // batching, an empty ring, padding or the destructor (they publish up to the last published
  // mark). This is how a consumer that forwards frames elsewhere keeps a window of them in
  // flight and frees each only once the far side has acknowledged it (shm-bridge does). Hold
  // less than the ring: a producer blocks on the room held frames take.
  // Cost: as release_deferred.
  [[nodiscard]] ReleaseMark release_held();
  // publish_release publishes every release up to `mark` (a mark this consumer returned; marks
  // must be given in the order they were returned, an older one than the last is ignored). When
  // `mark` is the latest, no frame is held any more and releases publish as usual again.
  // Cost: one store and one locked instruction (none if nothing new is published).
  void publish_release(ReleaseMark mark);

  // try_receive/receive: read + copy into `buffer` + release. kTooLarge (frame left unread) if
  // the buffer is smaller than the frame; Received::size then says how large it is.
  [[nodiscard]] Received try_receive(std::span<std::byte> buffer);
  [[nodiscard]] Received receive(std::span<std::byte> buffer, absl::Time deadline);
  [[nodiscard]] Received receive(std::span<std::byte> buffer, absl::Duration timeout) {
    return receive(buffer, DeadlineAfter(timeout));
  }

  std::size_t max_frame() const;
  std::uint64_t next_sequence() const;  // sequence number of the next frame to read
  std::string_view name() const;

 private:
  explicit SpscConsumer(std::unique_ptr<internal::SpscConsumerState> state);
  std::unique_ptr<internal::SpscConsumerState> state_;
};

}  // namespace shmring

#endif  // SHMRING_SPSC_H_
