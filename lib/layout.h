// layout.h — the shared-memory ABI of a shmring segment. Nothing else defines offsets.
//
// One POSIX shm object is one channel. Every process that maps it — producers, consumers,
// shm-inspect, a process built from another release — reads these structs, so they are plain
// standard-layout types with a static_assert on every offset, size and alignment. Changing any of
// them means bumping kAbiVersion.
//
//   offset 0                      SegmentHeader        (immutable once init_state == kReady)
//   header.control_offset         ControlBlock         (cursors, wake words, shared counters;
//                                                       one writer per 128-byte line)
//   header.endpoints_offset       EndpointEntry[max]   (who is attached, in which role; broadcast:
//                                                       entry 0 the publisher, 1.. subscribers)
//   header.data_offset            data area            (SPSC/broadcast byte ring or MPMC slots)
//   header.total_size             end of the object
//
// SPSC and broadcast frame, always 16-byte aligned, never wrapping (a padding frame fills the end
// of the ring):
//
//    0                   4                   8                                  16
//   +-------------------+-------------------+-----------------------------------+
//   | length (payload)  | flags             | sequence number: the READY word   |
//   +-------------------+-------------------+-----------------------------------+
//   | payload: `length` bytes, then padding up to the next 16-byte boundary     |
//   +---------------------------------------------------------------------------+
//
// Writing the ready word (the sequence number and the position's lap parity in bit 63; release,
// last) commits the frame: the consumer polls the ready word at its read position and never needs
// the producer's write position on its hot path (one cache line less per hop). Why a stale value
// can never pass for a new frame is argued at kFrameLapBit below.
//
// Broadcast (one publisher, many subscribers) uses the SPSC byte ring and frame format:
//
//   position:  oldest_position ........ subscriber cursors ........ write_position
//              |<- frames still held: a subscriber at or after oldest_position reads intact ->|
//   The publisher writes bytes below oldest_position + capacity only, and moves oldest_position
//   forward (frame by frame) *before* it overwrites them (the tail intent). A subscriber whose
//   cursor fell below oldest_position was lapped (overwrite) or evicted (block).
//   ControlBlock producer line: write_position, next_write_seq, oldest_position, oldest_seq,
//                               published_seq.
//   ControlBlock state line:    publisher_waits_for (the entry a blocked publisher sleeps on),
//                               subscriber_epoch (bumped when a subscriber places its cursor).
//   EndpointEntry (subscriber): cursor_position, cursor_seq (offset 48, its own line).
//   SegmentHeader: overflow (OverflowPolicy), evict_after_ns.
//
// MPMC slot (fixed stride, header.slot_stride bytes):
//
//    0                                       8                                  16
//   +---------------------------------------+-----------------------------------+
//   | turn (atomic; Vyukov ticket state)    | sequence number (= ticket)        |
//   +-------------------+-------------------+-----------------------------------+
//   | length (payload)  | flags             | producer endpoint | reserved      |
//   +-------------------+-------------------+-------------------+---------------+
//   | payload: up to max_frame bytes                                            |
//   +---------------------------------------------------------------------------+
//
// Liveness: endpoint i is alive while some open file description holds an OFD write lock on the
// byte at kEndpointLockBase + i of the shm object (the kernel drops it when the process dies). The
// creator holds the byte at kInitLockOffset while it initialises.
#ifndef SHMRING_LIB_LAYOUT_H_
#define SHMRING_LIB_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmring::internal {

// A fixed line size, not std::hardware_destructive_interference_size (it varies with -mtune and
// would change the ABI). 128 covers the adjacent-line prefetcher on x86 and Apple/ARM lines.
inline constexpr std::size_t kLineSize = 128;
inline constexpr std::size_t kPageSize = 4096;
// MPMC slots start on this boundary (slot_stride is a multiple of it).
inline constexpr std::size_t kSlotAlignment = 64;
// MPMC capacity (slots) is a power of two in [2, kMaxMpmcSlots].
inline constexpr std::uint64_t kMaxMpmcSlots = std::uint64_t{1} << 24;

inline constexpr std::uint64_t kMagic = 0x31474E4952'4D4853ULL;  // "SHMRING1" little-endian
// 2: EndpointEntry::finished, ControlBlock::finishing, and end-of-stream waits for held frames
// (lib/mpmc.cc) — a version-1 consumer would report kClosed past a frame another consumer holds.
// 3: the SPSC frame's sequence number is its ready word (consumers poll it, not write_position);
// its bit 63 is the lap parity of the frame's position, and the header slot after each committed
// frame is invalidated (kFrameNotReady). Also in 3: broadcast channels (kKindBroadcast):
// SegmentHeader::overflow/evict_after_ns,
// ControlBlock::oldest_position/oldest_seq/publisher_waits_for, the subscriber cursor in
// EndpointEntry, Counters::missed/lapped/evicted (Counters and EndpointEntry grew).
inline constexpr std::uint32_t kAbiVersion = 3;

enum class InitState : std::uint32_t { kInitializing = 0, kReady = 1 };
inline constexpr std::uint32_t kKindSpsc = 1;       // == shmring::Kind::kSpsc
inline constexpr std::uint32_t kKindMpmc = 2;       // == shmring::Kind::kMpmc
inline constexpr std::uint32_t kKindBroadcast = 3;  // == shmring::Kind::kBroadcast
// SegmentHeader::overflow (broadcast; 0 for the other kinds). == shmring::OverflowPolicy.
inline constexpr std::uint32_t kOverflowBlock = 0;
inline constexpr std::uint32_t kOverflowOverwrite = 1;
// SegmentHeader::evict_after_ns: never evict.
inline constexpr std::uint64_t kNeverEvict = ~std::uint64_t{0};
enum class Role : std::uint32_t { kNone = 0, kProducer = 1, kConsumer = 2 };

// Byte offsets used only for OFD locks (never read or written); beyond any plausible object size.
inline constexpr std::int64_t kInitLockOffset = std::int64_t{1} << 40;
inline constexpr std::int64_t kEndpointLockBase = kInitLockOffset + 1;
// MPMC: held while a consumer rescues a dead consumer's frame (lib/mpmc.cc, "Consumer death").
inline constexpr std::int64_t kRecoveryLockOffset = kInitLockOffset - 1;

using AtomicU32 = std::atomic<std::uint32_t>;
using AtomicU64 = std::atomic<std::uint64_t>;
static_assert(AtomicU32::is_always_lock_free && AtomicU64::is_always_lock_free,
              "cross-process atomics must be lock-free (address-free)");
static_assert(sizeof(AtomicU32) == 4 && sizeof(AtomicU64) == 8);

// Bytes of SegmentHeader before its reserved tail (the header is padded to two lines).
inline constexpr std::size_t kSegmentHeaderFieldBytes = 120;

// SegmentHeader: written once by the creator before it publishes init_state = kReady
// (release; paired with the opener's acquire load in ValidateHeader). Everything but init_state
// is immutable afterwards.
struct SegmentHeader {
  std::uint64_t magic;             // kMagic
  std::uint32_t abi_version;       // kAbiVersion
  std::uint32_t header_size;       // sizeof(SegmentHeader)
  std::uint32_t kind;              // Kind
  std::uint32_t flags;             // reserved, 0
  std::uint64_t total_size;        // bytes of the whole object
  std::uint64_t capacity;          // SPSC/broadcast: data bytes; MPMC: slots (powers of two)
  std::uint32_t max_frame;         // largest payload a frame may carry
  std::uint32_t slot_stride;       // MPMC: bytes per slot; SPSC: 0
  std::uint64_t control_offset;    // ControlBlock
  std::uint64_t endpoints_offset;  // EndpointEntry[max_endpoints]
  std::uint32_t max_endpoints;     // entries in the table. SPSC: 2 (0 = producer, 1 = consumer);
                                   // broadcast: 1 + max subscribers (0 = publisher)
  std::uint32_t endpoint_size;     // sizeof(EndpointEntry)
  std::uint64_t data_offset;       // page aligned
  std::uint64_t data_size;         // SPSC: capacity; MPMC: capacity * slot_stride
  std::uint32_t creator_uid;
  std::uint32_t creator_pid;
  std::uint64_t creation_time_ns;  // CLOCK_REALTIME
  AtomicU32 init_state;            // InitState
  std::uint32_t overflow;          // broadcast: kOverflowBlock / kOverflowOverwrite; else 0
  std::uint64_t evict_after_ns;    // broadcast, block: ChannelOptions::evict_after (kNeverEvict)
  std::uint8_t reserved[kLineSize * 2 - kSegmentHeaderFieldBytes];
};
static_assert(offsetof(SegmentHeader, reserved) == kSegmentHeaderFieldBytes);
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(sizeof(SegmentHeader) == 2 * kLineSize);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, abi_version) == 8);
static_assert(offsetof(SegmentHeader, header_size) == 12);
static_assert(offsetof(SegmentHeader, kind) == 16);
static_assert(offsetof(SegmentHeader, total_size) == 24);
static_assert(offsetof(SegmentHeader, capacity) == 32);
static_assert(offsetof(SegmentHeader, max_frame) == 40);
static_assert(offsetof(SegmentHeader, slot_stride) == 44);
static_assert(offsetof(SegmentHeader, control_offset) == 48);
static_assert(offsetof(SegmentHeader, endpoints_offset) == 56);
static_assert(offsetof(SegmentHeader, max_endpoints) == 64);
static_assert(offsetof(SegmentHeader, endpoint_size) == 68);
static_assert(offsetof(SegmentHeader, data_offset) == 72);
static_assert(offsetof(SegmentHeader, data_size) == 80);
static_assert(offsetof(SegmentHeader, creator_uid) == 88);
static_assert(offsetof(SegmentHeader, creator_pid) == 92);
static_assert(offsetof(SegmentHeader, creation_time_ns) == 96);
static_assert(offsetof(SegmentHeader, init_state) == 104);
static_assert(offsetof(SegmentHeader, overflow) == 108);
static_assert(offsetof(SegmentHeader, evict_after_ns) == 112);

// Counters kept per endpoint (written only by the endpoint's owner, so plain relaxed stores of a
// local copy suffice — no RMW on the hot path) and, for endpoints that went away, folded into
// ControlBlock::retired by whoever reclaims the entry.
struct Counters {
  AtomicU64 frames;       // frames committed (producer) / released (consumer)
  AtomicU64 bytes;        // payload bytes of those frames
  AtomicU64 wakeups;      // FUTEX_WAKE calls issued
  AtomicU64 waits;        // times this endpoint slept on a futex (ring empty or full)
  AtomicU64 abandoned;    // claims of dead producers this endpoint skipped or cleaned up
  AtomicU64 takeovers;    // roles or entries taken over from a dead process
  AtomicU64 redelivered;  // frames re-read after a dead consumer's hand-over
  AtomicU64 missed;       // broadcast subscriber: frames skipped because it was lapped/evicted
  AtomicU64 lapped;       // broadcast subscriber: times it was lapped (overwrite) or evicted
  AtomicU64 evicted;      // broadcast publisher: times it detached a live, stuck subscriber
  AtomicU64 reserved[6];
};
static_assert(sizeof(Counters) == kLineSize);
static_assert(offsetof(Counters, missed) == 56);
static_assert(offsetof(Counters, lapped) == 64);
static_assert(offsetof(Counters, evicted) == 72);

// A futex word and the flag that says somebody sleeps on it. Written rarely by both sides (only
// around a sleep), so it gets a line of its own away from the cursors.
//
// Protocol (Dekker-style handshake through read-modify-writes on `waiting`, which are totally
// ordered, so one side always sees the other):
//   waiter:  v = word.load(acquire); waiting.exchange(1, acq_rel); re-check the condition;
//            futex_wait(&word, v, timeout)
//   waker:   publish the condition; if (waiting.exchange(0, acq_rel)) {
//              word.fetch_add(1, release); futex_wake(&word) }
// The waker clears `waiting`, so a waiter that died asleep costs at most one wake-up, not one per
// frame.
struct alignas(kLineSize) WakeWord {
  AtomicU32 word;
  AtomicU32 waiting;
  std::uint8_t pad[kLineSize - 8];
};
static_assert(sizeof(WakeWord) == kLineSize);

// ControlBlock: the cursors and wake words. One writer per line.
struct ControlBlock {
  // Producer line (SPSC: written by the producer only; MPMC: the enqueue ticket, CAS by producers).
  alignas(kLineSize) AtomicU64 write_position;  // SPSC: byte position; MPMC: next ticket
  AtomicU64 next_write_seq;                     // SPSC: sequence number of the next frame
  // Broadcast: the tail intent. Position of the oldest frame still held; the publisher stores it
  // before overwriting anything below it + capacity (lib/broadcast.cc, [B3]).
  AtomicU64 oldest_position;
  AtomicU64 oldest_seq;  // broadcast: sequence number of that frame (informational)
  // Broadcast: next_write_seq again, stored after write_position, so a joining subscriber can take
  // a consistent (position, sequence) pair: it loads this, write_position, next_write_seq, and
  // accepts when the two sequence numbers agree.
  AtomicU64 published_seq;
  std::uint8_t producer_pad[kLineSize - 40];
  // Consumer line (SPSC: written by the consumer only; MPMC: the dequeue ticket).
  alignas(kLineSize) AtomicU64 read_position;  // SPSC: byte position; MPMC: next ticket
  AtomicU64 next_read_seq;                     // SPSC: sequence number of the next unread frame
  std::uint8_t consumer_pad[kLineSize - 16];
  WakeWord data_ready;   // consumers sleep here when the ring is empty
  WakeWord space_ready;  // producers sleep here when the ring is full
  // Rarely written state.
  alignas(kLineSize) AtomicU32 closed;  // kClosedBy*: 0 open, 1 close(), 2 every producer finished
  AtomicU32 finishing;                  // MPMC: 1 once some producer called finish()
  AtomicU64 close_time_ns;
  // Broadcast, block: the index (>= 1) of the subscriber entry a blocked publisher sleeps on (only
  // that subscriber's release wakes it), 0 when the publisher does not sleep.
  AtomicU32 publisher_waits_for;
  std::uint32_t state_reserved;
  // Broadcast: bumped (seq_cst) by a subscriber each time it places its cursor anew (attach, or
  // after a lap), after storing it; the publisher rescans when it changed ([B4]/[S5] in
  // lib/broadcast.cc), so a cursor placed during a scan is never passed unseen.
  AtomicU64 subscriber_epoch;
  std::uint8_t state_pad[kLineSize - 32];
  alignas(kLineSize) Counters retired;  // counters of endpoints that are gone (all roles)
  Counters retired_consumer;            // the consumers' share of `retired` (already in it)
};
static_assert(std::is_standard_layout_v<ControlBlock>);
static_assert(offsetof(ControlBlock, write_position) == 0);
static_assert(offsetof(ControlBlock, next_write_seq) == 8);
static_assert(offsetof(ControlBlock, read_position) == 1 * kLineSize);
static_assert(offsetof(ControlBlock, next_read_seq) == 1 * kLineSize + 8);
static_assert(offsetof(ControlBlock, data_ready) == 2 * kLineSize);
static_assert(offsetof(ControlBlock, space_ready) == 3 * kLineSize);
static_assert(offsetof(ControlBlock, closed) == 4 * kLineSize);
static_assert(offsetof(ControlBlock, finishing) == 4 * kLineSize + 4);
static_assert(offsetof(ControlBlock, oldest_position) == 16);
static_assert(offsetof(ControlBlock, oldest_seq) == 24);
static_assert(offsetof(ControlBlock, published_seq) == 32);
static_assert(offsetof(ControlBlock, publisher_waits_for) == 4 * kLineSize + 16);
static_assert(offsetof(ControlBlock, subscriber_epoch) == 4 * kLineSize + 24);
static_assert(offsetof(ControlBlock, retired) == 5 * kLineSize);
static_assert(offsetof(ControlBlock, retired_consumer) == 6 * kLineSize);
static_assert(sizeof(ControlBlock) == 7 * kLineSize);

// ControlBlock::closed: who ended the stream (any nonzero value means closed).
inline constexpr std::uint32_t kOpen = 0;
inline constexpr std::uint32_t kClosedByClose = 1;   // a producer called close()
inline constexpr std::uint32_t kClosedByFinish = 2;  // MPMC: every producer finished or died

inline constexpr std::uint64_t kNoTicket = ~std::uint64_t{0};

// EndpointEntry: one attached producer or consumer. Owned by whoever holds its OFD lock byte;
// written by that owner only (a newcomer writes it after taking the lock of a dead owner).
struct alignas(kLineSize) EndpointEntry {
  AtomicU32 role;            // Role; kNone when free
  AtomicU32 pid;             // owner's pid (informational: liveness is the OFD lock)
  AtomicU64 attach_time_ns;  // CLOCK_REALTIME
  AtomicU64 generation;      // bumped at every attach of this entry
  AtomicU64 claim_ticket;    // MPMC producer: ticket claimed but not committed, or kNoTicket
  AtomicU64 held_ticket;     // MPMC consumer: ticket read but not released, or kNoTicket;
                             // SPSC consumer: sequence number of the last frame it read
  AtomicU32 sleeping;        // 1 while the owner sleeps on a futex (informational)
  AtomicU32 finished;        // MPMC producer: 1 once it called finish() (reset at attach)
  // Broadcast subscriber: its cursor, the position of the next frame it reads (a frame boundary)
  // and that frame's sequence number. Written by the subscriber at release (the position with a
  // seq_cst store, [S2] in lib/broadcast.cc); the publisher scans the positions to find its limit.
  AtomicU64 cursor_position;
  AtomicU64 cursor_seq;
  std::uint8_t pad0[kLineSize - 64];
  Counters counters;  // a line of their own: the publisher's scan reads only the first line
};
static_assert(std::is_standard_layout_v<EndpointEntry>);
static_assert(sizeof(EndpointEntry) == 2 * kLineSize);
static_assert(offsetof(EndpointEntry, cursor_position) == 48);
static_assert(offsetof(EndpointEntry, cursor_seq) == 56);
static_assert(offsetof(EndpointEntry, claim_ticket) == 24);
static_assert(offsetof(EndpointEntry, finished) == 44);
static_assert(offsetof(EndpointEntry, counters) == kLineSize);

// SPSC frame header (see the diagram above).
inline constexpr std::uint32_t kFrameFlagPadding = 1u << 0;  // skip to the start of the ring
inline constexpr std::size_t kFrameAlign = 16;
struct FrameHeader {
  std::uint32_t length;
  std::uint32_t flags;
  std::uint64_t sequence;  // the ready word (kFrameLapBit): stored last, release, as an atomic
};
static_assert(std::is_standard_layout_v<FrameHeader>);
static_assert(sizeof(FrameHeader) == kFrameAlign);
static_assert(offsetof(FrameHeader, sequence) == 8);

// The ready word of the header slot at byte position X (an SPSC frame or padding frame starts at
// X) holds the frame's sequence number with bit 63 set to the LAP PARITY of X (bit
// log2(capacity) of X: even laps 0, odd laps 1); sequence numbers stay below 2^63.
// kFrameNotReady: the ready word of a slot that holds no frame (yet); never a frame's word.
// ReadyAt(X) <=> word != kFrameNotReady && its bit 63 == the lap parity of X.
//
// Why a stale word can never pass for a new frame. The consumer's read position X is a frame
// boundary it reached by following committed frames; the bytes at X may be left over from an
// earlier lap: an old frame header, or PAYLOAD of an old frame (a user payload may hold any
// value, sequence-number-like ones included). So before the producer commits a frame [P, E):
//   1. if E < read_position + capacity (its cached copy), the slot [E, E + 16) is free room and it
//      stores kFrameNotReady into E's ready word (relaxed). Otherwise E == cached read position +
//      capacity (the frame fills the ring): E - capacity is then the cached read position, where
//      a committed frame starts (one claim never fills a whole ring: the largest frame is half
//      of it), so the last write to the slot at E was that frame's header, one lap before, whose
//      lap parity is the other one: not ready at E either.
//   2. it writes the frame (and, when the frame wrapped, the padding frame before it, after the
//      frame), each ready word last with a release store.
//   The consumer reaches E only after reading the frame that ends there, with an acquire load
//   of that frame's ready word, so it sees the state of step 1 (or the genuine header written at
//   E later), never older bytes. The ring starts zeroed: the creator stores kFrameNotReady at
//   position 0. commit_deferred keeps the first frame of a batch at kFrameNotReady until the
//   batch is published (flush(), commit(), ...), so no deferred frame is reachable before.
//   A producer dying anywhere in 1-2 leaves its frontier not ready; frames it made ready but did
//   not publish in write_position are adopted by the next producer (it follows ready frames from
//   the published write_position), so nobody rewrites a frame a consumer may be reading. The
//   test needs no expected sequence number, so neither a consumer nor a producer taking over
//   depends on next_read_seq / next_write_seq being in step with the positions.
// Hostile input: the ready word only says "committed"; every header is still decoded by
// DecodeFrameAt against the data area and the consumer's window [read_position, read_position +
// capacity), so no header can make the reader leave the region the producer may have written.
// write_position stays the producer's published end (for wake-ups, a new producer, shm-inspect):
// a consumer that finds no frame ready loads it at end-of-stream and every 256 empty polls (a
// published frame that is not ready is kCorrupted).
inline constexpr std::uint64_t kFrameLapBit = std::uint64_t{1} << 63;
inline constexpr std::uint64_t kFrameNotReady = ~std::uint64_t{0};

// MPMC slot header (see the diagram above).
// turn: for the slot of ticket t (t % capacity == index):
//   t              free, the producer holding ticket t may write it
//   t + 1          committed frame of ticket t, a consumer may read it
//   (t + 1) | kTurnAbandoned   ticket t's producer died; consumers skip the slot
//   t + capacity   released by the consumer, free for ticket t + capacity
inline constexpr std::uint64_t kTurnAbandoned = std::uint64_t{1} << 63;
struct MpmcSlotHeader {
  AtomicU64 turn;
  std::uint64_t sequence;
  std::uint32_t length;
  std::uint32_t flags;
  std::uint32_t producer;
  std::uint32_t reserved;
};
static_assert(std::is_standard_layout_v<MpmcSlotHeader>);
static_assert(sizeof(MpmcSlotHeader) == 32);
static_assert(offsetof(MpmcSlotHeader, length) == 16);

inline constexpr std::uint64_t AlignUp(std::uint64_t v, std::uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}
inline constexpr bool IsPowerOfTwo(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace shmring::internal

#endif  // SHMRING_LIB_LAYOUT_H_
