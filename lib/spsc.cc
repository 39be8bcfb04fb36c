// spsc.cc — the single-producer single-consumer byte ring.
//
// Ordering protocol
// -----------------
// Shared fields (lib/layout.h), positions are byte counts that only grow (offset = pos & mask):
//   control.write_position  written by the producer only, release store in Publish() [P1]
//                           (from commit(), flush(), a claim that finds the ring full, close());
//                           read by the consumer with acquire [C1].
//   control.next_write_seq  producer, relaxed, before [P1] (for a producer taking over, and
//                           shm-inspect).
//   control.read_position   written by the consumer only, release store in release() [C2];
//                           read by the producer with acquire [P2].
//   control.next_read_seq   consumer, relaxed, before [C2].
//   control.closed          producer, release store in close() [P3]; consumer acquire [C3].
//   frames in the data area plain bytes: the producer writes a frame (header + payload) before
//                           [P1]; the consumer reads it after [C1] and stops touching it before
//                           [C2]; the producer overwrites it only after [P2] saw [C2].
// Pairs: P1→C1 (frame contents visible), C2→P2 (room is really free), P3→C3 then a reload of
// write_position (everything committed before close() is seen before end-of-stream).
// Each side keeps a cached copy of the other side's position and reloads it only when the cached
// value says full/empty, so the other side's line moves between cores at most once per batch.
// Wake-ups: after [P1] the producer calls Notify(data_ready); after [C2] the consumer calls
// Notify(space_ready) (the Dekker handshake on the wake word is described in endpoint.h).
// Batched publication: commit_deferred() advances only the producer's local write position; the
// frames (and next_write_seq) are published by the next [P1] (at the latest once a quarter of the
// ring is deferred), which one release store and one
// Notify handshake cover for the whole batch. A claim that finds the ring full publishes first (the
// consumer can only free room it can see), and so do close() and the producer's destructor.
// The consumer's release_deferred() is the mirror image: read_position (and next_read_seq) are
// published by the next [C2] — release(), or a read that finds the ring empty (the producer can
// only fill room it can see), or the consumer's destructor.
// release_held() pins the publishable read position at the first held frame: every [C2] above
// then publishes at most the pin, which only publish_release(mark) moves (a consumer-local
// decision: the producer and a successor see an ordinary, smaller read_position).
//
// The consumer treats every byte it loads from the segment as hostile: positions are bounded
// against the capacity, frame lengths against max_frame and the published region, and each is
// loaded once into a local before use. A violation returns kCorrupted, never an out-of-bounds read.
#include "shmring/spsc.h"

#include <climits>
#include <cstring>

#include "endpoint.h"
#include "spsc_frame.h"

namespace shmring {
namespace internal {

// Deferred publication (commit_deferred, release_deferred) publishes anyway once this fraction of
// the ring is deferred, so a batch larger than the ring cannot turn the stream into turns of
// "producer fills, consumer drains" with no overlap.
inline constexpr std::uint64_t kDeferredLimitDivisor = 4;

struct RingView {
  ControlBlock* control;
  std::byte* data;
  std::uint64_t capacity;
  std::uint64_t mask;
  std::uint32_t max_frame;
  explicit RingView(const Endpoint& ep)
      : control(ep.control()),
        data(ep.segment().data()),
        capacity(ep.segment().geometry().capacity),
        mask(ep.segment().geometry().capacity - 1),
        max_frame(ep.segment().geometry().max_frame) {}
};

struct SpscProducerState {
  std::unique_ptr<Endpoint> endpoint;
  RingView ring;
  std::uint64_t write_position;      // end of the last committed frame (published or deferred)
  std::uint64_t published_position;  // == control.write_position: what the consumer may see
  std::uint64_t cached_read_position;
  std::uint64_t next_sequence;
  // Outstanding claim.
  bool claimed = false;
  std::uint64_t claim_position = 0;  // where the claimed frame's header goes
  std::uint64_t claim_size = 0;

  explicit SpscProducerState(std::unique_ptr<Endpoint> ep)
      : endpoint(std::move(ep)),
        ring(*endpoint),
        // Acquire: pairs with [P1] of a previous (dead) producer: its frames and
        // next_write_seq are visible.
        write_position(ring.control->write_position.load(std::memory_order_acquire)),
        published_position(write_position),
        cached_read_position(ring.control->read_position.load(std::memory_order_acquire)),
        next_sequence(ring.control->next_write_seq.load(std::memory_order_relaxed)) {
    // The free region, if the cursors make sense (TryClaim reports them corrupted otherwise).
    const std::uint64_t used = write_position - cached_read_position;
    const std::uint64_t free_bytes =
        cached_read_position <= write_position && used <= ring.capacity ? ring.capacity - used : 0;
    PrefaultDataArea(ring.data, ring.capacity, /*for_writing=*/true, write_position, free_bytes);
  }

  Claim TryClaim(std::size_t size) {
    // Relaxed is enough to see a close eventually; ordering with the consumer is via [P3]/[C3].
    if (ring.control->closed.load(std::memory_order_relaxed) != 0) return {Result::kClosed, {}, 0};
    if (size > ring.max_frame) return {Result::kTooLarge, {}, 0};
    if (claimed) claimed = false;  // a claim made while one is outstanding replaces it (spsc.h)
    const std::uint64_t frame = FrameBytes(size);
    const std::uint64_t offset = write_position & ring.mask;
    const std::uint64_t to_end = ring.capacity - offset;
    const std::uint64_t need = frame <= to_end ? frame : to_end + frame;
    if (write_position + need - cached_read_position > ring.capacity) {
      // [P2] acquire: pairs with the consumer's release in release() [C2].
      const std::uint64_t read = ring.control->read_position.load(std::memory_order_acquire);
      if (read > write_position || write_position - read > ring.capacity) {
        return {Result::kCorrupted, {}, 0};
      }
      cached_read_position = read;
      if (write_position + need - cached_read_position > ring.capacity) {
        // Deferred frames must become visible, or the consumer could never free this room.
        Publish();
        return {Result::kWouldBlock, {}, 0};
      }
    }
    std::uint64_t position = write_position;
    if (frame > to_end) {
      // The frame would wrap: fill the end with a padding frame, published together with the
      // claimed frame by commit().
      FrameHeader pad{static_cast<std::uint32_t>(to_end - sizeof(FrameHeader)), kFrameFlagPadding,
                      next_sequence};
      std::memcpy(ring.data + offset, &pad, sizeof(pad));
      position += to_end;
    }
    claimed = true;
    claim_position = position;
    claim_size = size;
    std::byte* payload = ring.data + (position & ring.mask) + sizeof(FrameHeader);
    return {Result::kOk, std::span<std::byte>(payload, size), next_sequence};
  }

  // Commit commits the claimed frame; `publish` false defers its publication (commit_deferred).
  void Commit(std::size_t size, bool publish = true) {
    if (!claimed) return;
    if (size > claim_size) size = claim_size;
    claimed = false;
    const FrameHeader header{static_cast<std::uint32_t>(size), 0, next_sequence};
    std::memcpy(ring.data + (claim_position & ring.mask), &header, sizeof(header));
    write_position = claim_position + FrameBytes(size);
    ++next_sequence;
    endpoint->CountFrame(size);
    if (publish || write_position - published_position >= ring.capacity / kDeferredLimitDivisor) {
      Publish();
    }
  }

  // Publish makes every committed frame visible to the consumer and wakes it if it sleeps.
  void Publish() {
    if (published_position == write_position) return;
    published_position = write_position;
    // Relaxed: ordered before [P1] below, read after [C1] / by a successor after its acquire.
    ring.control->next_write_seq.store(next_sequence, std::memory_order_relaxed);
    // [P1] release: publishes the frames (and any padding before them) up to write_position.
    // Pairs with [C1].
    ring.control->write_position.store(write_position, std::memory_order_release);
    endpoint->Notify(ring.control->data_ready, 1);
  }

  // A producer that detaches cleanly publishes what it committed: committed frames are never lost.
  ~SpscProducerState() {
    if (endpoint) Publish();
  }

  void Close() {
    claimed = false;
    Publish();  // deferred frames come before end-of-stream
    // [P3] (in PublishClose) release at least: pairs with [C3]; everything committed before is
    // visible at end-of-stream.
    PublishClose(*ring.control);
  }
};

struct SpscConsumerState {
  std::unique_ptr<Endpoint> endpoint;
  RingView ring;
  std::uint64_t read_position;            // local; published by release() [C2]
  std::uint64_t published_read_position;  // == control.read_position
  std::uint64_t cached_write_position;
  std::uint64_t next_sequence;
  // The frame handed out by the last successful read, until release().
  bool holding = false;
  Frame held;
  std::uint64_t held_end = 0;
  // release_held: while `pinned`, [C2] publishes at most `pin`, never read_position.
  bool pinned = false;
  ReleaseMark pin;
  std::uint64_t last_held_end = 0;  // end of the newest held frame
  // Frames up to this sequence number were read by a consumer that died (the role was taken
  // over): they come again, flagged as redelivered. kNoTicket: none.
  std::uint64_t redelivered_through = kNoTicket;

  explicit SpscConsumerState(std::unique_ptr<Endpoint> ep)
      : endpoint(std::move(ep)),
        ring(*endpoint),
        read_position(ring.control->read_position.load(std::memory_order_acquire)),
        published_read_position(read_position),
        cached_write_position(read_position),
        next_sequence(ring.control->next_read_seq.load(std::memory_order_relaxed)) {
    PrefaultDataArea(ring.data, ring.capacity, /*for_writing=*/false);
    // A dead consumer's record of the last frame it read (see TryRead). The role starts at the
    // published read position, so every frame it read and did not release (or released without
    // publishing) is read again. Relaxed: the record is ours now (we hold the role's lock).
    if (endpoint->previous().role == Role::kConsumer) {
      redelivered_through = endpoint->previous().held_ticket;
    }
    endpoint->entry()->held_ticket.store(kNoTicket, std::memory_order_relaxed);
  }

  // A consumer that detaches cleanly publishes what it released (deferred releases included).
  ~SpscConsumerState() {
    if (endpoint) PublishDeferred();
  }

  void PublishDeferred() {
    if (published_read_position != read_position) PublishReadPosition();
  }

  void PublishReadPosition() {
    const ReleaseMark to = pinned ? pin : ReleaseMark{read_position, next_sequence};
    if (pinned && to.position == published_read_position) return;
    published_read_position = to.position;
    // Relaxed: ordered before [C2].
    ring.control->next_read_seq.store(to.next_sequence, std::memory_order_relaxed);
    // [C2] release: we are done reading everything before to.position. Pairs with [P2].
    ring.control->read_position.store(to.position, std::memory_order_release);
    endpoint->Notify(ring.control->space_ready, 1);
  }

  Frame TryRead() {
    if (holding) return held;
    for (;;) {
      if (read_position == cached_write_position) {
        // [C1] acquire: pairs with [P1]; the frames before write_position are complete.
        const std::uint64_t write = ring.control->write_position.load(std::memory_order_acquire);
        if (write < read_position || write - read_position > ring.capacity) {
          return {Result::kCorrupted, false, {}, 0};
        }
        cached_write_position = write;
        if (write == read_position) {
          // Empty: deferred releases must become visible, or the producer could never use the
          // room they freed.
          PublishDeferred();
          // [C3] acquire: pairs with [P3]. Then reload write_position: frames committed before
          // close() must be drained before end-of-stream is reported.
          if (ring.control->closed.load(std::memory_order_acquire) == 0) {
            return {Result::kWouldBlock, false, {}, 0};
          }
          const std::uint64_t last = ring.control->write_position.load(std::memory_order_acquire);
          if (last == read_position) return {Result::kClosed, false, {}, 0};
          if (last < read_position || last - read_position > ring.capacity) {
            return {Result::kCorrupted, false, {}, 0};
          }
          cached_write_position = last;
        }
      }
      const DecodedFrame frame = DecodeFrameAt(ring.data, ring.capacity, ring.max_frame,
                                               read_position, cached_write_position);
      if (frame.kind == DecodedFrame::Kind::kCorrupted) return {Result::kCorrupted, false, {}, 0};
      if (frame.kind == DecodedFrame::Kind::kPadding) {
        read_position = frame.next_position;
        // Publish at once: the producer may need exactly this room to place its next frame.
        PublishReadPosition();
        continue;
      }
      // Relaxed: the record a consumer taking the role over after our death reads (it flags the
      // frames up to this one as redelivered). Our own line; nobody reads it while we live.
      endpoint->entry()->held_ticket.store(frame.sequence, std::memory_order_relaxed);
      // Return the local, not `held`: reading back the fields just stored would stall on store
      // forwarding (a wide load over narrower stores), which cost more than the rest of the read.
      const Frame out{Result::kOk,
                      redelivered_through != kNoTicket && frame.sequence <= redelivered_through,
                      std::span<const std::byte>(ring.data + frame.payload_offset, frame.length),
                      frame.sequence};
      held = out;
      held_end = frame.next_position;
      holding = true;
      return out;
    }
  }

  // Release frees the held frame; `publish` false defers the publication (release_deferred).
  void Release(bool publish = true) {
    if (!holding) return;
    holding = false;
    read_position = held_end;
    next_sequence = held.sequence + 1;
    endpoint->CountFrame(held.data.size());
    if (publish ||
        read_position - published_read_position >= ring.capacity / kDeferredLimitDivisor) {
      PublishReadPosition();
    }
  }

  ReleaseMark ReleaseHeld() {
    if (holding && !pinned) {
      // Everything released so far (deferred included) stays publishable; this frame is not.
      pinned = true;
      pin = {read_position, next_sequence};
    }
    Release(/*publish=*/false);
    last_held_end = read_position;
    return {read_position, next_sequence};
  }

  void PublishRelease(ReleaseMark mark) {
    if (!pinned || mark.position <= pin.position || mark.position > read_position) return;
    if (mark.position >= last_held_end) {
      // Nothing is held any more: publish everything read, padding skipped since included.
      pinned = false;
    } else {
      pin = mark;
    }
    PublishReadPosition();
  }
};

}  // namespace internal

// ---- SpscProducer ----

absl::StatusOr<SpscProducer> SpscProducer::Attach(std::string_view name,
                                                  const EndpointOptions& options) {
  auto endpoint = internal::Endpoint::Attach(name, Kind::kSpsc, internal::Role::kProducer, options);
  if (!endpoint.ok()) return endpoint.status();
  return SpscProducer(std::make_unique<internal::SpscProducerState>(std::move(*endpoint)));
}

SpscProducer::SpscProducer(std::unique_ptr<internal::SpscProducerState> state)
    : state_(std::move(state)) {}
SpscProducer::SpscProducer(SpscProducer&&) noexcept = default;
SpscProducer& SpscProducer::operator=(SpscProducer&&) noexcept = default;
SpscProducer::~SpscProducer() = default;

Claim SpscProducer::try_claim(std::size_t size) { return state_->TryClaim(size); }

Claim SpscProducer::claim(std::size_t size, absl::Time deadline) {
  return state_->endpoint->Wait(state_->ring.control->space_ready, deadline,
                                [&] { return state_->TryClaim(size); });
}

Result SpscProducer::commit() {
  state_->Commit(state_->claim_size);
  return Result::kOk;
}
Result SpscProducer::commit(std::size_t size) {
  state_->Commit(size);
  return Result::kOk;
}
void SpscProducer::commit_deferred() { state_->Commit(state_->claim_size, /*publish=*/false); }
void SpscProducer::commit_deferred(std::size_t size) { state_->Commit(size, /*publish=*/false); }
void SpscProducer::flush() { state_->Publish(); }
void SpscProducer::abort() { state_->claimed = false; }

Result SpscProducer::try_send(std::span<const std::byte> payload) {
  Claim c = state_->TryClaim(payload.size());
  if (!c.ok()) return c.result;
  if (!payload.empty()) std::memcpy(c.data.data(), payload.data(), payload.size());
  state_->Commit(payload.size());
  return Result::kOk;
}

Result SpscProducer::send(std::span<const std::byte> payload, absl::Time deadline) {
  Claim c = claim(payload.size(), deadline);
  if (!c.ok()) return c.result;
  if (!payload.empty()) std::memcpy(c.data.data(), payload.data(), payload.size());
  state_->Commit(payload.size());
  return Result::kOk;
}

void SpscProducer::close() { state_->Close(); }
std::size_t SpscProducer::max_frame() const { return state_->ring.max_frame; }
std::uint64_t SpscProducer::next_sequence() const { return state_->next_sequence; }
std::string_view SpscProducer::name() const { return state_->endpoint->name(); }

// ---- SpscConsumer ----

absl::StatusOr<SpscConsumer> SpscConsumer::Attach(std::string_view name,
                                                  const EndpointOptions& options) {
  auto endpoint = internal::Endpoint::Attach(name, Kind::kSpsc, internal::Role::kConsumer, options);
  if (!endpoint.ok()) return endpoint.status();
  return SpscConsumer(std::make_unique<internal::SpscConsumerState>(std::move(*endpoint)));
}

SpscConsumer::SpscConsumer(std::unique_ptr<internal::SpscConsumerState> state)
    : state_(std::move(state)) {}
SpscConsumer::SpscConsumer(SpscConsumer&&) noexcept = default;
SpscConsumer& SpscConsumer::operator=(SpscConsumer&&) noexcept = default;
SpscConsumer::~SpscConsumer() = default;

Frame SpscConsumer::try_read() { return state_->TryRead(); }

Frame SpscConsumer::read(absl::Time deadline) {
  return state_->endpoint->Wait(state_->ring.control->data_ready, deadline,
                                [&] { return state_->TryRead(); });
}

void SpscConsumer::release() { state_->Release(); }
void SpscConsumer::release_deferred() { state_->Release(/*publish=*/false); }
ReleaseMark SpscConsumer::release_held() { return state_->ReleaseHeld(); }
void SpscConsumer::publish_release(ReleaseMark mark) { state_->PublishRelease(mark); }

Received SpscConsumer::try_receive(std::span<std::byte> buffer) {
  Received r = internal::CopyOut(state_->TryRead(), buffer);
  if (r.ok()) state_->Release();
  return r;
}

Received SpscConsumer::receive(std::span<std::byte> buffer, absl::Time deadline) {
  Received r = internal::CopyOut(read(deadline), buffer);
  if (r.ok()) state_->Release();
  return r;
}

std::size_t SpscConsumer::max_frame() const { return state_->ring.max_frame; }
std::uint64_t SpscConsumer::next_sequence() const {
  return state_->holding ? state_->held.sequence : state_->next_sequence;
}
std::string_view SpscConsumer::name() const { return state_->endpoint->name(); }

}  // namespace shmring
