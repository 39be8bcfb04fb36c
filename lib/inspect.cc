// inspect.cc — the read-only segment decoder behind shm-inspect (see inspect.h).
//
// Why pread(2) into private buffers rather than a PROT_READ mapping: another process may shrink
// the object with ftruncate while we read it. Touching a mapped page beyond the new end raises
// SIGBUS; surviving that needs a process-wide signal handler and a siglongjmp out of the middle
// of a copy, which interacts badly with C++ frames, threads and any other handler the embedding
// program installs. pread never faults: a shrunk object is a short read, reported as DataLoss.
// The cost is a copy of the metadata (header, control block, endpoint table: at most ~0.5 MiB) per
// snapshot and of the few frame headers and previews asked for — nothing on a hot path.
//
// pread copies are not atomic loads, so a value being written concurrently could in principle be
// read torn. The only values whose tearing would matter are the cursors; they are read in the
// order consumer line then producer line (both only grow, so read <= write holds for a live
// segment), bounded, and re-read a few times before an inconsistency is reported as corruption.
// Everything else (counters, pids) is informational.
//
// Liveness is tested with F_OFD_GETLK only: a query, which neither takes nor releases a lock.
#include "inspect.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shmring/channel.h"
#include "spsc_frame.h"

namespace shmring::internal {

CounterValues& CounterValues::operator+=(const CounterValues& o) {
  frames += o.frames;
  bytes += o.bytes;
  wakeups += o.wakeups;
  waits += o.waits;
  abandoned += o.abandoned;
  takeovers += o.takeovers;
  redelivered += o.redelivered;
  missed += o.missed;
  lapped += o.lapped;
  evicted += o.evicted;
  return *this;
}

Snapshot::Lag Snapshot::LagOf(const EndpointSnapshot& e) const {
  Lag lag;
  if (e.cursor_seq && *e.cursor_seq < next_write_seq) lag.frames = next_write_seq - *e.cursor_seq;
  if (e.cursor_position && *e.cursor_position < write_position) {
    lag.bytes = write_position - *e.cursor_position;
  }
  return lag;
}

bool Snapshot::Behind(const EndpointSnapshot& e) const {
  return e.cursor_position && *e.cursor_position < read_position;
}

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kSpsc:
      return "spsc";
    case Kind::kMpmc:
      return "mpmc";
    case Kind::kBroadcast:
      return "broadcast";
  }
  return "?";
}

const char* OverflowName(std::uint32_t overflow) {
  switch (overflow) {
    case kOverflowBlock:
      return "block";
    case kOverflowOverwrite:
      return "overwrite";
    default:
      return "unknown";
  }
}

const char* FrameStateName(FrameSnapshot::State state) {
  switch (state) {
    case FrameSnapshot::State::kCommitted:
      return "committed";
    case FrameSnapshot::State::kPending:
      return "pending";
    case FrameSnapshot::State::kAbandoned:
      return "abandoned";
  }
  return "?";
}

namespace {

// Raw copies of the shared structs. The structs hold std::atomic members, which are not
// trivially copyable in the language's eyes; a byte copy into suitably aligned storage followed by
// relaxed loads is what the rest of the library does with its header copies too.
template <typename T>
struct RawCopy {
  alignas(T) unsigned char bytes[sizeof(T)];
  const T& get() const { return *reinterpret_cast<const T*>(bytes); }
};

std::uint64_t Load(const AtomicU64& a) { return a.load(std::memory_order_relaxed); }
std::uint32_t Load(const AtomicU32& a) { return a.load(std::memory_order_relaxed); }

CounterValues ToValues(const Counters& c) {
  CounterValues v;
  v.frames = Load(c.frames);
  v.bytes = Load(c.bytes);
  v.wakeups = Load(c.wakeups);
  v.waits = Load(c.waits);
  v.abandoned = Load(c.abandoned);
  v.takeovers = Load(c.takeovers);
  v.redelivered = Load(c.redelivered);
  v.missed = Load(c.missed);
  v.lapped = Load(c.lapped);
  v.evicted = Load(c.evicted);
  return v;
}

// Anonymous, lazily zero-filled shadow of the SPSC data area: DecodeFrameAt (the one SPSC frame
// decoder, shared with the consumer) takes the whole ring; only the frame headers we visit are
// copied into it, so untouched pages cost nothing.
class Shadow {
 public:
  explicit Shadow(std::uint64_t size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~Shadow() {
    if (base_ != nullptr) munmap(base_, size_);
  }
  Shadow(const Shadow&) = delete;
  Shadow& operator=(const Shadow&) = delete;
  std::byte* data() const { return base_; }

 private:
  std::uint64_t size_;
  std::byte* base_;
};

absl::Status Shrunk(const std::string& p, std::uint64_t offset, std::uint64_t object_size) {
  return absl::DataLossError(
      absl::StrCat(p, "object shrank while being read (short read at offset ", offset,
                   ", fstat said ", object_size, " bytes): truncated by another process"));
}

void DecodeSpscFrames(const Geometry& g, const ByteReader& read, const DecodeOptions& options,
                      Snapshot& s) {
  if (s.read_position == s.write_position) return;
  if (g.data_size > (std::uint64_t{1} << 40)) {
    s.frames_note = "ring too large to decode frames";
    return;
  }
  Shadow shadow(g.data_size);
  if (shadow.data() == nullptr) {
    s.frames_note = "cannot allocate a shadow of the ring to decode frames";
    return;
  }
  const std::uint64_t mask = g.capacity - 1;
  std::uint64_t position = s.read_position;
  // Each step advances by at least one 16-byte frame, so this bounds the walk.
  const std::uint64_t max_steps = g.capacity / kFrameAlign + 2;
  for (std::uint64_t step = 0;
       step < max_steps && s.frames.size() < options.max_frames && position < s.write_position;
       ++step) {
    const std::uint64_t offset = position & mask;
    if (g.capacity - offset >= sizeof(FrameHeader) && offset % kFrameAlign == 0) {
      if (read(g.data_offset + offset, shadow.data() + offset, sizeof(FrameHeader)) !=
          sizeof(FrameHeader)) {
        s.frames_note = "object shrank while its frames were read";
        return;
      }
    }
    const DecodedFrame f =
        DecodeFrameAt(shadow.data(), g.capacity, g.max_frame, position, s.write_position);
    if (f.kind == DecodedFrame::Kind::kCorrupted) {
      s.frames_note = absl::StrCat("impossible frame at position ", position,
                                   " (corrupted, or released and overwritten while being read)");
      return;
    }
    if (f.kind == DecodedFrame::Kind::kFrame) {
      FrameSnapshot fs;
      fs.state = FrameSnapshot::State::kCommitted;
      fs.sequence = f.sequence;
      fs.length = f.length;
      fs.flags = f.flags;
      fs.preview.resize(std::min<std::uint64_t>(f.length, options.preview_bytes));
      if (!fs.preview.empty()) {
        fs.preview.resize(
            read(g.data_offset + f.payload_offset, fs.preview.data(), fs.preview.size()));
      }
      s.frames.push_back(std::move(fs));
    }
    position = f.next_position;
  }
}

void DecodeMpmcFrames(const Geometry& g, const ByteReader& read, const DecodeOptions& options,
                      Snapshot& s) {
  const std::uint64_t mask = g.capacity - 1;
  for (std::uint64_t t = s.read_position;
       t < s.write_position && s.frames.size() < options.max_frames; ++t) {
    const std::uint64_t slot = g.data_offset + (t & mask) * g.slot_stride;
    RawCopy<MpmcSlotHeader> raw;
    if (read(slot, raw.bytes, sizeof(raw.bytes)) != sizeof(raw.bytes)) {
      s.frames_note = "object shrank while its frames were read";
      return;
    }
    const MpmcSlotHeader& h = raw.get();
    const std::uint64_t turn = Load(h.turn);
    FrameSnapshot fs;
    fs.sequence = t;
    if (turn == t) {
      fs.state = FrameSnapshot::State::kPending;  // claimed, not committed yet
      s.frames.push_back(std::move(fs));
      continue;
    }
    if (turn == ((t + 1) | kTurnAbandoned)) {
      fs.state = FrameSnapshot::State::kAbandoned;
      s.frames.push_back(std::move(fs));
      continue;
    }
    if (turn != t + 1) {
      s.frames_note = absl::StrCat("slot of ticket ", t, " moved on while being read (turn ", turn,
                                   "): a consumer took it meanwhile");
      return;
    }
    if (h.sequence != t || h.length > g.max_frame) {
      s.frames_note = absl::StrCat("impossible slot for ticket ", t, " (sequence ", h.sequence,
                                   ", length ", h.length, "): corrupted");
      return;
    }
    fs.state = FrameSnapshot::State::kCommitted;
    fs.length = h.length;
    fs.flags = h.flags;
    fs.producer = h.producer;
    fs.preview.resize(std::min<std::uint64_t>(h.length, options.preview_bytes));
    if (!fs.preview.empty()) {
      fs.preview.resize(read(slot + sizeof(MpmcSlotHeader), fs.preview.data(), fs.preview.size()));
    }
    s.frames.push_back(std::move(fs));
  }
}

// Orders the copies a ByteReader makes. pread(2) is a system call, already ordered; the in-memory
// reader (fuzzing, tests) needs the fence. TSan does not model fences (GCC refuses them with
// -fsanitize=thread), and on x86 an acquire fence only restrains the compiler, so TSan builds
// keep that part.
inline void AcquireFence() {
#if SHMRING_TSAN
  std::atomic_signal_fence(std::memory_order_acquire);
#else
  std::atomic_thread_fence(std::memory_order_acquire);
#endif
}

// ---- per kind ----
// KindDecoder: what differs between ring kinds when a segment is decoded. A new kind adds one
// row to kKindDecoders; Decode itself stays kind-agnostic.
struct KindDecoder {
  Kind kind;
  // Sequences: the next sequence numbers, from the control block and the producer line's second
  // word (read after the control block; see ReadCursors).
  void (*sequences)(const ControlBlock& c, std::uint64_t producer_word, Snapshot& s);
  // Endpoint: the kind's fields of one endpoint entry (tickets, finish flags).
  void (*endpoint)(const EndpointEntry& e, EndpointSnapshot& es, Snapshot& s);
  // Frames: up to options.max_frames unread frames into s.frames.
  void (*frames)(const Geometry& g, const ByteReader& read, const DecodeOptions& options,
                 Snapshot& s);
};

void SpscSequences(const ControlBlock& c, std::uint64_t producer_word, Snapshot& s) {
  s.next_read_seq = Load(c.next_read_seq);
  s.next_write_seq = producer_word;
}

void MpmcSequences(const ControlBlock&, std::uint64_t, Snapshot& s) {
  s.next_read_seq = s.read_position;  // tickets are sequence numbers
  s.next_write_seq = s.write_position;
}

// Broadcast: the oldest frame held stands for the read cursor (both only grow, and it is on the
// producer line, copied before the producer line's re-read: oldest <= write).
void BroadcastSequences(const ControlBlock& c, std::uint64_t producer_word, Snapshot& s) {
  s.read_position = Load(c.oldest_position);
  s.next_read_seq = Load(c.oldest_seq);
  s.next_write_seq = producer_word;
}

void NoEndpointFields(const EndpointEntry&, EndpointSnapshot&, Snapshot&) {}

void BroadcastEndpointFields(const EndpointEntry& e, EndpointSnapshot& es, Snapshot&) {
  if (es.role != static_cast<std::uint32_t>(Role::kConsumer)) return;
  es.cursor_position = Load(e.cursor_position);
  es.cursor_seq = Load(e.cursor_seq);
}

void MpmcEndpointFields(const EndpointEntry& e, EndpointSnapshot& es, Snapshot& s) {
  if (const std::uint64_t t = Load(e.claim_ticket); t != kNoTicket) es.claim_ticket = t;
  if (const std::uint64_t t = Load(e.held_ticket); t != kNoTicket) es.held_ticket = t;
  es.finished = es.role == static_cast<std::uint32_t>(Role::kProducer) && Load(e.finished) != 0;
  if (es.held_ticket && es.role == static_cast<std::uint32_t>(Role::kConsumer)) ++s.frames_held;
}

constexpr KindDecoder kKindDecoders[] = {
    {Kind::kSpsc, SpscSequences, NoEndpointFields, DecodeSpscFrames},
    {Kind::kMpmc, MpmcSequences, MpmcEndpointFields, DecodeMpmcFrames},
    // The frames still held, from the oldest (a subscriber's unread ones are a suffix of them).
    {Kind::kBroadcast, BroadcastSequences, BroadcastEndpointFields, DecodeSpscFrames},
};

const KindDecoder* DecoderFor(Kind kind) {
  for (const KindDecoder& d : kKindDecoders) {
    if (d.kind == kind) return &d;
  }
  return nullptr;
}

// ---- the steps of Decode ----

// ReadReadyHeader copies the header of an object whose init state is kReady and validates it.
// init_state first, then the rest: the creator writes every field before its release store of
// kReady, so fields copied after we saw kReady are the initialised ones.
absl::StatusOr<Geometry> ReadReadyHeader(std::string_view name, std::uint64_t object_size,
                                         const ByteReader& read, bool creator_alive,
                                         std::uint32_t* abi_version) {
  const std::string p = Prefix(name);
  if (object_size == 0) {
    return absl::DataLossError(absl::StrCat(
        p, "empty object (0 bytes): not a shmring segment, or its creator died before sizing it"));
  }
  if (object_size < sizeof(SegmentHeader)) {
    return ValidateHeader(name, SegmentHeader{}, object_size).status();
  }
  std::uint32_t state = 0;
  if (read(offsetof(SegmentHeader, init_state), &state, sizeof(state)) != sizeof(state)) {
    return Shrunk(p, offsetof(SegmentHeader, init_state), object_size);
  }
  AcquireFence();
  SegmentHeader header;
  if (read(0, static_cast<void*>(&header), sizeof(header)) != sizeof(header)) {
    return Shrunk(p, 0, object_size);
  }
  if (header.magic != kMagic) {
    if (header.magic == 0 && state != static_cast<std::uint32_t>(InitState::kReady)) {
      if (creator_alive) {
        return absl::UnavailableError(absl::StrCat(p, "still being initialised by its creator"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat(p,
                       "not initialised (no magic): not a shmring segment, or its creator "
                       "died before writing the header"));
    }
    return ValidateHeader(name, header, object_size).status();
  }
  if (state != static_cast<std::uint32_t>(InitState::kReady)) {
    if (creator_alive) {
      return absl::UnavailableError(
          absl::StrCat(p, "still being initialised by its creator (pid ", header.creator_pid, ")"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat(p, "was never initialised: its creator (pid ", header.creator_pid,
                     ") died before finishing (remove it with shm-cat rm or shm-cat gc)"));
  }
  *abi_version = header.abi_version;
  return ValidateHeader(name, header, object_size);
}

// ReadCursors copies the control block, then the producer line again: read_position (consumer
// line) is then older than write_position, so a live segment gives read <= write. A torn or raced
// read is retried; what stays inconsistent is corruption.
absl::Status ReadCursors(const KindDecoder& kind, const Geometry& g, std::uint64_t object_size,
                         const ByteReader& read, RawCopy<ControlBlock>& control, Snapshot& s) {
  const std::string p = Prefix(s.name);
  bool consistent = false;
  for (int attempt = 0; attempt < 4 && !consistent; ++attempt) {
    if (read(g.control_offset, control.bytes, sizeof(control.bytes)) != sizeof(control.bytes)) {
      return Shrunk(p, g.control_offset, object_size);
    }
    AcquireFence();
    std::uint64_t producer_line[2];
    if (read(g.control_offset + offsetof(ControlBlock, write_position), producer_line,
             sizeof(producer_line)) != sizeof(producer_line)) {
      return Shrunk(p, g.control_offset, object_size);
    }
    s.read_position = Load(control.get().read_position);
    s.write_position = producer_line[0];
    kind.sequences(control.get(), producer_line[1], s);
    consistent = s.read_position <= s.write_position &&
                 s.write_position - s.read_position <= g.capacity &&
                 s.next_read_seq <= s.next_write_seq;
  }
  if (!consistent) {
    return absl::DataLossError(absl::StrCat(p, "corrupted cursors: write position ",
                                            s.write_position, ", read position ", s.read_position,
                                            " (sequence ", s.next_write_seq, " / ", s.next_read_seq,
                                            "), capacity ", g.capacity));
  }
  return absl::OkStatus();
}

// TakeControl: the control block's words other than the cursors (close state, wake words,
// retired counters).
void TakeControl(const Geometry& g, const ControlBlock& c, Snapshot& s) {
  s.fill = s.write_position - s.read_position;
  s.closed_by = Load(c.closed);
  s.closed = s.closed_by != 0;
  s.finishing = g.kind == Kind::kMpmc && Load(c.finishing) != 0;
  if (g.kind == Kind::kBroadcast) {
    s.overflow = g.overflow;
    s.evict_after_ns = g.evict_after_ns;
    // The subscriber entry (>= 1) a blocked publisher sleeps on; 0: it does not sleep.
    if (const std::uint32_t waits = Load(c.publisher_waits_for); waits != 0) {
      s.publisher_waits_for = waits;
    }
  }
  s.close_time_ns = Load(c.close_time_ns);
  s.data_ready_word = Load(c.data_ready.word);
  s.data_ready_waiting = Load(c.data_ready.waiting) != 0;
  s.space_ready_word = Load(c.space_ready.word);
  s.space_ready_waiting = Load(c.space_ready.waiting) != 0;
  s.retired = ToValues(c.retired);
  s.counters = s.retired;
  const CounterValues retired_consumer = ToValues(c.retired_consumer);
  s.frames_consumed = retired_consumer.frames;
  s.bytes_consumed = retired_consumer.bytes;
}

// ReadEndpoints decodes the endpoint table, in one read (at most 4096 entries of 128 bytes:
// bounded by ValidateHeader): entries in use or locked, the per-role totals and liveness counts.
absl::Status ReadEndpoints(const KindDecoder& kind, const Geometry& g, std::uint64_t object_size,
                           const ByteReader& read, const Liveness& alive, Snapshot& s) {
  std::vector<RawCopy<EndpointEntry>> entries(g.max_endpoints);
  const std::size_t table_bytes = entries.size() * sizeof(EndpointEntry);
  if (table_bytes != 0 && read(g.endpoints_offset, entries.data(), table_bytes) != table_bytes) {
    return Shrunk(Prefix(s.name), g.endpoints_offset, object_size);
  }
  for (std::uint32_t i = 0; i < g.max_endpoints; ++i) {
    const EndpointEntry& e = entries[i].get();
    const CounterValues values = ToValues(e.counters);
    s.counters += values;  // a detached entry's counters were folded into retired and zeroed
    const std::uint32_t role = Load(e.role);
    if (role == static_cast<std::uint32_t>(Role::kConsumer)) {
      s.frames_consumed += values.frames;
      s.bytes_consumed += values.bytes;
    }
    const bool live = alive(i);
    if (role == static_cast<std::uint32_t>(Role::kNone) && !live) continue;
    EndpointSnapshot es;
    es.index = i;
    es.role = role;
    es.pid = Load(e.pid);
    es.alive = live;
    es.generation = Load(e.generation);
    es.attach_time_ns = Load(e.attach_time_ns);
    kind.endpoint(e, es, s);
    es.sleeping = Load(e.sleeping) != 0;
    es.counters = values;
    if (live) {
      ++s.endpoints_alive;
      if (es.sleeping) ++s.waiters;
    } else {
      ++s.endpoints_dead;
    }
    s.endpoints.push_back(std::move(es));
  }
  // Clamped: a corrupted segment may claim more consumed than counted in all.
  s.frames_produced = s.counters.frames - std::min(s.counters.frames, s.frames_consumed);
  s.bytes_produced = s.counters.bytes - std::min(s.counters.bytes, s.bytes_consumed);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Snapshot> Decode(std::string_view name, std::uint64_t object_size,
                                const ByteReader& read, const Liveness& alive,
                                const DecodeOptions& options, bool creator_alive) {
  std::uint32_t abi_version = 0;
  absl::StatusOr<Geometry> geometry =
      ReadReadyHeader(name, object_size, read, creator_alive, &abi_version);
  if (!geometry.ok()) return geometry.status();
  const Geometry& g = *geometry;
  const KindDecoder* kind = DecoderFor(g.kind);
  if (kind == nullptr) {  // ValidateHeader knows a kind this decoder does not (yet)
    return absl::FailedPreconditionError(absl::StrCat(
        Prefix(name), "ring kind ", static_cast<std::uint32_t>(g.kind), " cannot be inspected"));
  }
  Snapshot s;
  s.name = std::string(name);
  s.object_size = object_size;
  s.abi_version = abi_version;
  s.geometry = g;
  RawCopy<ControlBlock> control;
  if (absl::Status st = ReadCursors(*kind, g, object_size, read, control, s); !st.ok()) return st;
  TakeControl(g, control.get(), s);
  if (absl::Status st = ReadEndpoints(*kind, g, object_size, read, alive, s); !st.ok()) return st;
  if (options.max_frames > 0) kind->frames(g, read, options, s);
  return s;
}

absl::StatusOr<Snapshot> DecodeSegment(std::string_view name, std::span<const std::byte> bytes,
                                       std::uint64_t object_size, const Liveness& alive,
                                       const DecodeOptions& options) {
  ByteReader read = [bytes](std::uint64_t offset, void* out, std::size_t size) -> std::size_t {
    if (offset >= bytes.size()) return 0;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(size, bytes.size() - offset));
    std::memcpy(out, bytes.data() + offset, n);
    return n;
  };
  return Decode(name, object_size, read, alive, options);
}

absl::StatusOr<Snapshot> InspectChannel(std::string_view raw_name, const DecodeOptions& options) {
  if (absl::Status s = ValidateName(raw_name); !s.ok()) return s;
  const std::string name = CanonicalName(raw_name);
  const std::string p = Prefix(name);
  // glibc's shm_open adds O_NOFOLLOW | O_CLOEXEC. O_RDONLY: we cannot write even by mistake.
  // O_NONBLOCK: a FIFO planted in /dev/shm must not hang us (fstat then refuses it).
  const int fd = shm_open(name.c_str(), O_RDONLY | O_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(errno, name, "cannot open");
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, name, "fstat failed");
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(p, "not a regular shm object"));
  }
  ByteReader read = [fd](std::uint64_t offset, void* out, std::size_t size) -> std::size_t {
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n =
          pread(fd, static_cast<char*>(out) + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  };
  Liveness alive = [fd](std::uint32_t index) {
    return IsByteLocked(fd, kEndpointLockBase + index);
  };
  return Decode(name, static_cast<std::uint64_t>(st.st_size), read, alive, options,
                IsByteLocked(fd, kInitLockOffset));
}

}  // namespace shmring::internal
