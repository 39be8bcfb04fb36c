// spsc.cc — the single-producer single-consumer byte ring.
//
// Ordering protocol
// -----------------
// Shared fields (lib/layout.h), positions are byte counts that only grow (offset = pos & mask):
//   frame ready word        FrameHeader::sequence. Written by the producer only: kFrameNotReady
//                           into the slot after the last frame the consumer can reach (relaxed,
//                           [P0]: per frame, or once per deferred batch in Publish()), then the
//                           frame's header with its ready word last, release store in Commit()
//                           [P1];
//                           read by the consumer with acquire [C1] on its hot path (it polls
//                           until IsReadyWord (spsc_frame.h); layout.h, kFrameLapBit, says why
//                           a stale word can never pass for a frame).
//   control.write_position  written by the producer only, release store in Publish() [P4]
//                           (from commit(), flush(), a claim that finds the ring full, close()),
//                           after the ready words of the frames it covers; read by the consumer
//                           with acquire [C4] only when the ring looks empty and it must tell
//                           closed or corrupted from empty (and by a producer taking over).
//   control.next_write_seq  producer, relaxed, before [P4] (for a producer taking over, and
//                           shm-inspect).
//   control.read_position   written by the consumer only, release store in release() [C2];
//                           read by the producer with acquire [P2].
//   control.next_read_seq   consumer, relaxed, before [C2].
//   control.closed          producer, release store in close() [P3]; consumer acquire [C3].
//   frames in the data area plain bytes: the producer writes a frame (header + payload) before
//                           its [P1]; the consumer reads it after [C1] and stops touching it
//                           before [C2]; the producer overwrites it only after [P2] saw [C2].
// Pairs: P1→C1 (frame contents visible), P4→C4 (every frame before write_position is ready),
// C2→P2 (room is really free), P3→C3 then a reload of write_position (everything committed before
// close() is seen before end-of-stream).
// The producer keeps a cached copy of read_position and reloads it only when the cached value
// says full, so the consumer's line moves between cores at most once per batch; the consumer
// does not read the producer's line at all while frames keep coming.
// Wake-ups: after [P4] the producer calls Notify(data_ready); after [C2] the consumer calls
// Notify(space_ready) (the Dekker handshake on the wake word is described in endpoint.h; the
// waiter's re-check polls the ready word, which [P1] stored before the waker's RMW).
// Batched publication: commit_deferred() writes the frame but keeps the ready word of the first
// frame of the batch at kFrameNotReady, and advances only the producer's local write position;
// the next Publish() stores that one ready word ([P1] for the whole batch) and then
// write_position (and next_write_seq) [P4] (at the latest once a quarter of the ring is
// deferred): one release store of each and one Notify handshake cover the whole batch. A claim that
// finds the ring full publishes first (the consumer can only free room it can see), and so do
// close() and the producer's destructor. The consumer's release_deferred() is the mirror image:
// read_position (and next_read_seq) are published by the next [C2] — release(), or a read that
// finds the ring empty (the producer can only fill room it can see), or the consumer's destructor.
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

// A consumer that finds no frame ready checks the producer's published end (write_position)
// once per this many polls, and at end-of-stream.
inline constexpr std::uint32_t kEmptyPollsPerCheck = 256;

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
  // commit_deferred: the first frame of the unpublished batch (at published_position) was written
  // with its ready word at kFrameNotReady; Publish() stores `withheld_ready` there.
  bool withheld = false;
  std::uint64_t withheld_ready = 0;
  // Outstanding claim.
  bool claimed = false;
  std::uint64_t pad_position = 0;    // where the padding frame goes, == claim_position if none
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
    AdoptReadyFrames();
    // The free region, if the cursors make sense (TryClaim reports them corrupted otherwise).
    const std::uint64_t used = write_position - cached_read_position;
    const std::uint64_t free_bytes =
        cached_read_position <= write_position && used <= ring.capacity ? ring.capacity - used : 0;
    PrefaultDataArea(ring.data, ring.capacity, /*for_writing=*/true, write_position, free_bytes);
    Publish();
  }

  // AdoptReadyFrames: a predecessor that died between making frames ready ([P1]) and publishing
  // write_position ([P4]) left frames the consumer may be reading. Continue after them — never
  // rewrite them — and publish them (a committed frame is never lost). Stops at the first slot
  // that is not ready, or at anything implausible (the cursors are then left for TryClaim).
  void AdoptReadyFrames() {
    const std::uint64_t read = cached_read_position;
    if (read > write_position || write_position - read > ring.capacity) return;
    while (write_position - read < ring.capacity && write_position % kFrameAlign == 0) {
      // Acquire: pairs with the dead producer's [P1]; its frame's header and payload are visible.
      const std::uint64_t word =
          FrameReadyWord(ring.data, write_position & ring.mask).load(std::memory_order_acquire);
      if (!IsReadyWord(word, write_position, ring.capacity)) return;
      const DecodedFrame f = DecodeFrameAt(ring.data, ring.capacity, ring.max_frame, write_position,
                                           read + ring.capacity);
      if (f.kind == DecodedFrame::Kind::kCorrupted) return;
      if (f.kind == DecodedFrame::Kind::kFrame) next_sequence = f.sequence + 1;
      write_position = f.next_position;
    }
  }

  // TryClaimFast is TryClaim's common case — room by the cached read position, no wrap, no
  // claim outstanding, open — without a call, so that claim() and send() need no callee-saved
  // registers (an inlined call on any path made GCC save and restore six on every claim).
  // Anything else returns kWouldBlock without changing state; the caller then runs TryClaim,
  // which decides.
  [[gnu::always_inline]] Claim TryClaimFast(std::size_t size) {
    // Relaxed: as in TryClaim.
    if (ring.control->closed.load(std::memory_order_relaxed) != 0 || size > ring.max_frame ||
        claimed || write_position % kFrameAlign != 0) {
      return {Result::kWouldBlock, {}, 0};
    }
    const std::uint64_t frame = FrameBytes(size);
    if (frame > ring.capacity - (write_position & ring.mask) ||
        write_position + frame - cached_read_position > ring.capacity) {
      return {Result::kWouldBlock, {}, 0};
    }
    return Grant(write_position, size);
  }

  // Grant records the claim of a frame of `size` bytes at `position` (after padding from
  // write_position, if they differ) and returns it.
  [[gnu::always_inline]] Claim Grant(std::uint64_t position, std::size_t size) {
    claimed = true;
    pad_position = write_position;
    claim_position = position;
    claim_size = size;
    std::byte* payload = ring.data + (position & ring.mask) + sizeof(FrameHeader);
    return {Result::kOk, std::span<std::byte>(payload, size), next_sequence};
  }

  // Always inlined (here and in TryRead): claim()/read() then build their result in registers;
  // an out-of-line call returned it through memory, and the caller's wide reload of fields just
  // stored narrower stalled on store forwarding (a third of read()'s time).
  [[gnu::always_inline]] Claim TryClaim(std::size_t size) {
    // Relaxed is enough to see a close eventually; ordering with the consumer is via [P3]/[C3].
    if (ring.control->closed.load(std::memory_order_relaxed) != 0) return {Result::kClosed, {}, 0};
    if (size > ring.max_frame) return {Result::kTooLarge, {}, 0};
    if (claimed) claimed = false;  // a claim made while one is outstanding replaces it (spsc.h)
    // Our position is ours, but it started as the segment's (hostile) write_position: the ready
    // words we store must be aligned.
    if (write_position % kFrameAlign != 0) return {Result::kCorrupted, {}, 0};
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
    // The frame would wrap: commit() fills the end with a padding frame (written only then, so an
    // aborted claim leaves nothing the consumer could follow).
    return Grant(frame > to_end ? write_position + to_end : write_position, size);
  }

  // Commit commits the claimed frame; `publish` false defers its publication (commit_deferred).
  void Commit(std::size_t size, bool publish = true) {
    if (!claimed) return;
    if (size > claim_size) size = claim_size;
    claimed = false;
    const std::uint64_t end = claim_position + FrameBytes(size);
    // The first frame (or padding) of a deferred batch stays unreachable until Publish().
    const bool withhold = !publish && pad_position == published_position;
    // [P0] only where the consumer can follow this frame at once: a frame behind a withheld one
    // (or withheld itself) is unreachable until Publish(), which stores [P0] once after the last
    // frame of the batch. So a deferred batch pays one [P0], not one per frame (each of which
    // dirtied the next frame's line a commit early: the 64 B stream lost ~20% to it).
    if (!withheld && !withhold) ClearSlotAfter(end);
    const std::uint64_t ready = ReadyWordFor(next_sequence, claim_position, ring.capacity);
    // [P1] release (in StoreFrameHeader): commits the frame (header, payload and [P0]). Pairs
    // with the consumer's acquire load of the ready word [C1].
    StoreFrameHeader(ring.data, ring.capacity, claim_position, static_cast<std::uint32_t>(size), 0,
                     withhold && pad_position == claim_position ? kFrameNotReady : ready);
    if (pad_position != claim_position) {
      // [P1] for the padding, after its frame: the consumer that skips it finds the frame ready.
      StoreFrameHeader(
          ring.data, ring.capacity, pad_position,
          static_cast<std::uint32_t>(claim_position - pad_position - sizeof(FrameHeader)),
          kFrameFlagPadding,
          withhold ? kFrameNotReady : ReadyWordFor(next_sequence, pad_position, ring.capacity));
    }
    if (withhold) {
      withheld = true;
      withheld_ready = ReadyWordFor(next_sequence, pad_position, ring.capacity);
    }
    write_position = end;
    ++next_sequence;
    endpoint->CountFrameLater(size);
    if (publish || write_position - published_position >= ring.capacity / kDeferredLimitDivisor) {
      Publish();
    }
  }

  // ClearSlotAfter: [P0] relaxed, the slot at `end` (just after the last frame the consumer can
  // reach) says "no frame" before that frame can be followed to it; unless the frame fills the
  // ring up to the (cached) read position, where the slot holds our header of one lap before,
  // which the lap parity already rules out (layout.h, kFrameLapBit). Ordered before the
  // consumer's reads of that slot by the [P1] that makes the frame reachable.
  void ClearSlotAfter(std::uint64_t end) {
    if (end - cached_read_position < ring.capacity) {
      FrameReadyWord(ring.data, end & ring.mask).store(kFrameNotReady, std::memory_order_relaxed);
    }
  }

  // Publish makes every committed frame visible to the consumer and wakes it if it sleeps.
  void Publish() {
    if (published_position == write_position) return;
    if (withheld) {
      // [P0] for the whole batch: its frames were committed without one (Commit).
      ClearSlotAfter(write_position);
      // [P1] for a deferred batch: its first frame becomes reachable, and through it the rest.
      withheld = false;
      FrameReadyWord(ring.data, published_position & ring.mask)
          .store(withheld_ready, std::memory_order_release);
    }
    published_position = write_position;
    endpoint->FlushFrameCounts();
    // Relaxed: ordered before [P4] below, read after [C4] / by a successor after its acquire.
    ring.control->next_write_seq.store(next_sequence, std::memory_order_relaxed);
    // [P4] release: every frame before write_position is ready (their [P1] came first). Pairs
    // with [C4] and with a successor's acquire load.
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
  std::uint64_t next_sequence;
  std::uint32_t empty_polls = 0;  // polls that found no frame, for the periodic [C4]
  // The frame handed out by the last successful read, until release().
  bool holding = false;
  // Kept field by field, not as a Frame: assigning a whole Frame made the compiler assemble it on
  // the stack with narrow stores and reload it 16 bytes at a time, which stalls on store
  // forwarding (it cost more than the rest of the read). Held() rebuilds it for a read that finds
  // it still held; the read that takes a frame returns it from its locals (see TryRead).
  std::span<const std::byte> held_data;
  std::uint64_t held_sequence = 0;
  bool held_redelivered = false;
  std::uint64_t held_end = 0;
  Frame Held() const { return {Result::kOk, held_redelivered, held_data, held_sequence}; }
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
    endpoint->FlushFrameCounts();
    const ReleaseMark to = pinned ? pin : ReleaseMark{read_position, next_sequence};
    if (pinned && to.position == published_read_position) return;
    published_read_position = to.position;
    // Relaxed: ordered before [C2].
    ring.control->next_read_seq.store(to.next_sequence, std::memory_order_relaxed);
    // [C2] release: we are done reading everything before to.position. Pairs with [P2].
    ring.control->read_position.store(to.position, std::memory_order_release);
    endpoint->Notify(ring.control->space_ready, 1);
  }

  // TryReadFast is TryRead's common case — the held frame, or a frame (not padding) ready at
  // read_position — without a call, so that read() needs no callee-saved registers (see
  // TryClaimFast). Anything else returns kWouldBlock without changing state; the caller then
  // runs TryRead, which decides (and validates again: the peer may have rewritten the header).
  [[gnu::always_inline]] Frame TryReadFast() {
    if (holding) return Held();
    const std::uint64_t position = read_position;
    const std::uint64_t offset = position & ring.mask;
    if (offset % kFrameAlign != 0) return {Result::kWouldBlock, false, {}, 0};
    // [C1] acquire, as in TryRead.
    const std::uint64_t word = FrameReadyWord(ring.data, offset).load(std::memory_order_acquire);
    if (!IsReadyWord(word, position, ring.capacity)) return {Result::kWouldBlock, false, {}, 0};
    // A subset of DecodeFrameAt (spsc_frame.h): a frame without flags, its length loaded once,
    // within max_frame and the end of the data area (the published region, position + capacity,
    // holds it then). Everything else — padding, flags, a bad length — goes to TryRead.
    // The header is copied whole, as DecodeFrameAt does: a sequence that no longer matches the
    // ready word (the peer rewrote the header since [C1]) goes to TryRead, which reports it.
    FrameHeader header;
    std::memcpy(&header, ring.data + offset, sizeof(header));
    const std::uint64_t bytes = FrameBytes(header.length);
    if (header.sequence != word || header.flags != 0 || header.length > ring.max_frame ||
        bytes > ring.capacity - offset) {
      return {Result::kWouldBlock, false, {}, 0};
    }
    DecodedFrame frame;
    frame.kind = DecodedFrame::Kind::kFrame;
    frame.payload_offset = offset + sizeof(FrameHeader);
    frame.length = header.length;
    frame.sequence = word & ~kFrameLapBit;
    frame.next_position = position + bytes;
    return Take(frame);
  }

  // Take holds the decoded frame (kind kFrame, its sequence checked against its ready word) and
  // returns it.
  [[gnu::always_inline]] Frame Take(const DecodedFrame& frame) {
    // Relaxed: the record a consumer taking the role over after our death reads (it flags the
    // frames up to this one as redelivered). Our own line; nobody reads it while we live.
    endpoint->entry()->held_ticket.store(frame.sequence, std::memory_order_relaxed);
    const bool redelivered =
        redelivered_through != kNoTicket && frame.sequence <= redelivered_through;
    const std::span<const std::byte> data(ring.data + frame.payload_offset, frame.length);
    held_redelivered = redelivered;
    held_data = data;
    held_sequence = frame.sequence;
    held_end = frame.next_position;
    holding = true;
    // Built from the locals, not with Held(): reloading held_data right after storing it was a
    // store-forwarding stall (SLP vectorisation reloaded the span 16 bytes at a time; it is off
    // in lib/meson.build, and this keeps the code from depending on that flag).
    return {Result::kOk, redelivered, data, frame.sequence};
  }

  [[gnu::always_inline]] Frame TryRead() {
    if (holding) return Held();
    for (;;) {
      // read_position is ours, but it started as the segment's (hostile) read_position: the
      // ready word we poll must be aligned and inside the ring.
      if (read_position % kFrameAlign != 0) return {Result::kCorrupted, false, {}, 0};
      // [C1] acquire: pairs with the producer's [P1]; the frame's header and payload (and the
      // slot after it, [P0]) are visible once its ready word is set.
      const std::uint64_t word =
          FrameReadyWord(ring.data, read_position & ring.mask).load(std::memory_order_acquire);
      if (!IsReadyWord(word, read_position, ring.capacity)) {
        const Result r = NoFrameReady();
        if (r != Result::kOk) return {r, false, {}, 0};
        continue;  // a frame became ready
      }
      const DecodedFrame frame = DecodeFrameAt(ring.data, ring.capacity, ring.max_frame,
                                               read_position, read_position + ring.capacity);
      // Another sequence number now: the peer rewrote the header since [C1].
      if (frame.kind == DecodedFrame::Kind::kCorrupted ||
          frame.sequence != (word & ~kFrameLapBit)) {
        return {Result::kCorrupted, false, {}, 0};
      }
      if (frame.kind == DecodedFrame::Kind::kPadding) {
        read_position = frame.next_position;
        // Publish at once: the producer may need exactly this room to place its next frame.
        PublishReadPosition();
        continue;
      }
      return Take(frame);
    }
  }

  // NoFrameReady decides what a poll that found no frame at read_position means: kWouldBlock
  // (empty), kClosed (empty and closed), kCorrupted (the producer's published end says a frame
  // should be here), or kOk (a frame is ready after all: poll again).
  Result NoFrameReady() {
    // Empty: deferred releases must become visible, or the producer could never use the room
    // they freed.
    PublishDeferred();
    // [C3] acquire: pairs with [P3]; write_position loaded below is then the final one.
    const bool closed = ring.control->closed.load(std::memory_order_acquire) != 0;
    // The producer's line is read only at end-of-stream and every kEmptyPollsPerCheck polls (to
    // notice a peer that publishes write_position but no ready words), so a spinning consumer
    // does not pull it away from the producer on every poll.
    if (!closed && ++empty_polls % kEmptyPollsPerCheck != 0) return Result::kWouldBlock;
    // [C4] acquire: pairs with [P4]; every frame before write_position is ready.
    const std::uint64_t write = ring.control->write_position.load(std::memory_order_acquire);
    if (write == read_position) return closed ? Result::kClosed : Result::kWouldBlock;
    if (write - read_position <= ring.capacity) {
      // Published: the frame at read_position must be ready now. Acquire: as [C1].
      const bool ready = IsReadyWord(
          FrameReadyWord(ring.data, read_position & ring.mask).load(std::memory_order_acquire),
          read_position, ring.capacity);
      return ready ? Result::kOk : Result::kCorrupted;
    }
    // Behind us: we read frames between their [P1] and the [P4] that covers them (or a dead
    // producer's, which its successor publishes); never after close(), which publishes first.
    if (!closed && read_position - write <= ring.capacity) return Result::kWouldBlock;
    return Result::kCorrupted;
  }

  // Release frees the held frame; `publish` false defers the publication (release_deferred).
  void Release(bool publish = true) {
    if (!holding) {
      // Nothing held: release() still publishes the deferred releases (spsc.h), so a consumer
      // that ends a batch with release_deferred() can hand the room back without reading again.
      if (publish) PublishDeferred();
      return;
    }
    holding = false;
    read_position = held_end;
    next_sequence = held_sequence + 1;
    endpoint->CountFrameLater(held_data.size());
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

Claim SpscProducer::try_claim(std::size_t size) {
  Claim c = state_->TryClaimFast(size);
  if (c.result != Result::kWouldBlock) [[likely]]
    return c;
  return internal::PollOutOfLine(
      *state_, [size](auto& s) __attribute__((always_inline)) { return s.TryClaim(size); });
}

Claim SpscProducer::claim(std::size_t size, absl::Time deadline) {
  Claim c = state_->TryClaimFast(size);
  if (c.result != Result::kWouldBlock) [[likely]]
    return c;
  return internal::WaitOutOfLine<&internal::ControlBlock::space_ready>(
      *state_,
      deadline, [size](auto& s) __attribute__((always_inline)) { return s.TryClaim(size); });
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
  Claim c = try_claim(payload.size());
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

Frame SpscConsumer::try_read() {
  Frame f = state_->TryReadFast();
  if (f.result != Result::kWouldBlock) [[likely]]
    return f;
  return internal::PollOutOfLine(
      *state_, [](auto& s) __attribute__((always_inline)) { return s.TryRead(); });
}

Frame SpscConsumer::read(absl::Time deadline) {
  Frame f = state_->TryReadFast();
  if (f.result != Result::kWouldBlock) [[likely]]
    return f;
  return internal::WaitOutOfLine<&internal::ControlBlock::data_ready>(
      *state_, deadline, [](auto& s) __attribute__((always_inline)) { return s.TryRead(); });
}

void SpscConsumer::release() { state_->Release(); }
void SpscConsumer::release_deferred() { state_->Release(/*publish=*/false); }
ReleaseMark SpscConsumer::release_held() { return state_->ReleaseHeld(); }
void SpscConsumer::publish_release(ReleaseMark mark) { state_->PublishRelease(mark); }

Received SpscConsumer::try_receive(std::span<std::byte> buffer) {
  Received r = internal::CopyOut(try_read(), buffer);
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
  return state_->holding ? state_->held_sequence : state_->next_sequence;
}
std::string_view SpscConsumer::name() const { return state_->endpoint->name(); }

}  // namespace shmring
