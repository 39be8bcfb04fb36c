#include "endpoint.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace shmring::internal {
namespace {

// Retire folds an entry's counters into the segment's `retired` counters (and a consumer's also
// into `retired_consumer`, so totals can be split by role) and zeroes them.
void Retire(ControlBlock* control, EndpointEntry* entry, Role role) {
  auto fold = [&](AtomicU64 Counters::*field) {
    // Relaxed: counters are statistics; no other data depends on their order.
    const std::uint64_t v = (entry->counters.*field).exchange(0, std::memory_order_relaxed);
    if (v == 0) return;
    (control->retired.*field).fetch_add(v, std::memory_order_relaxed);
    if (role == Role::kConsumer) {
      (control->retired_consumer.*field).fetch_add(v, std::memory_order_relaxed);
    }
  };
  fold(&Counters::frames);
  fold(&Counters::bytes);
  fold(&Counters::wakeups);
  fold(&Counters::waits);
  fold(&Counters::abandoned);
  fold(&Counters::takeovers);
  fold(&Counters::redelivered);
  fold(&Counters::missed);
  fold(&Counters::lapped);
  fold(&Counters::evicted);
}

void Add(RoleCounters* to, const Counters& c) {
  // Relaxed: statistics.
  to->frames += c.frames.load(std::memory_order_relaxed);
  to->bytes += c.bytes.load(std::memory_order_relaxed);
  to->wakeups += c.wakeups.load(std::memory_order_relaxed);
  to->waits += c.waits.load(std::memory_order_relaxed);
  to->abandoned += c.abandoned.load(std::memory_order_relaxed);
  to->takeovers += c.takeovers.load(std::memory_order_relaxed);
  to->redelivered += c.redelivered.load(std::memory_order_relaxed);
  to->missed += c.missed.load(std::memory_order_relaxed);
  to->lapped += c.lapped.load(std::memory_order_relaxed);
  to->evicted += c.evicted.load(std::memory_order_relaxed);
}

// LockEntry takes the liveness lock of an endpoint entry for `role` and returns its index: SPSC,
// the role's fixed entry (FailedPrecondition naming the holder's pid if it is taken); MPMC, a free
// entry, else a dead owner's (ResourceExhausted if every entry is held). Broadcast: the publisher
// entry 0 as an SPSC role, subscribers any entry from 1 on as MPMC endpoints.
absl::StatusOr<std::uint32_t> LockEntry(const Segment& seg, Kind kind, Role role) {
  const int fd = seg.fd();
  const std::uint32_t count = seg.geometry().max_endpoints;
  std::uint32_t index = count;
  const bool fixed_role =
      kind == Kind::kSpsc || (kind == Kind::kBroadcast && role == Role::kProducer);
  if (fixed_role) {
    const std::uint32_t fixed = role == Role::kProducer ? 0 : 1;
    if (!TryLockByte(fd, kEndpointLockBase + fixed)) {
      // Relaxed: informational only; the lock decides.
      const std::uint32_t pid = seg.endpoint(fixed)->pid.load(std::memory_order_relaxed);
      const std::string role_name = kind == Kind::kBroadcast
                                        ? std::string("publisher")
                                        : RoleName(static_cast<std::uint32_t>(role));
      return absl::FailedPreconditionError(absl::StrCat(Prefix(seg.name()), "the ", role_name,
                                                        " role is held by pid ", pid, " (alive)"));
    }
    index = fixed;
  } else {
    // Prefer never-used or cleanly detached entries; then those of dead owners.
    const std::uint32_t first = kind == Kind::kBroadcast ? 1 : 0;
    for (int pass = 0; pass < 2 && index == count; ++pass) {
      for (std::uint32_t i = first; i < count; ++i) {
        const bool free = seg.endpoint(i)->role.load(std::memory_order_relaxed) ==
                          static_cast<std::uint32_t>(Role::kNone);
        if ((pass == 0) != free) continue;
        if (TryLockByte(fd, kEndpointLockBase + i)) {
          index = i;
          break;
        }
      }
    }
    if (index == count) {
      if (kind == Kind::kBroadcast) {
        return absl::ResourceExhaustedError(absl::StrCat(Prefix(seg.name()), "all ", count - 1,
                                                         " subscriber entries are attached by "
                                                         "live processes (max_endpoints)"));
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          Prefix(seg.name()), "all ", count, " endpoints are attached by live processes"));
    }
  }

  return index;
}

}  // namespace

ChannelCounters SumCounters(const Segment& segment) {
  ChannelCounters out;
  const ControlBlock* control = segment.control();
  RoleCounters all;
  Add(&all, control->retired);
  Add(&out.consumers, control->retired_consumer);
  // The producers' share of `retired` is the rest (retired_consumer is a part of it).
  out.producers = {
      all.frames - out.consumers.frames,           all.bytes - out.consumers.bytes,
      all.wakeups - out.consumers.wakeups,         all.waits - out.consumers.waits,
      all.abandoned - out.consumers.abandoned,     all.takeovers - out.consumers.takeovers,
      all.redelivered - out.consumers.redelivered, all.missed - out.consumers.missed,
      all.lapped - out.consumers.lapped,           all.evicted - out.consumers.evicted};
  for (std::uint32_t i = 0; i < segment.geometry().max_endpoints; ++i) {
    const EndpointEntry* e = segment.endpoint(i);
    // Relaxed: statistics; an entry changing role meanwhile is counted on either side.
    const auto role = static_cast<Role>(e->role.load(std::memory_order_relaxed));
    if (role == Role::kProducer) Add(&out.producers, e->counters);
    if (role == Role::kConsumer) Add(&out.consumers, e->counters);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Attach(std::string_view name, Kind kind,
                                                           Role role,
                                                           const EndpointOptions& options) {
  OpenOptions open;
  open.access = Access::kReadWrite;
  open.expected_kind = kind;
  open.deadline = WallNow() + options.open_timeout;
  open.allow_shared_mode = options.allow_shared_mode;
  absl::StatusOr<std::unique_ptr<Segment>> segment = Segment::Open(name, open);
  if (!segment.ok()) return segment.status();
  Segment& seg = **segment;
  absl::StatusOr<std::uint32_t> index = LockEntry(seg, kind, role);
  if (!index.ok()) return index.status();

  auto endpoint = std::unique_ptr<Endpoint>(new Endpoint());
  endpoint->segment_ = std::move(*segment);
  endpoint->control_ = seg.control();
  endpoint->entry_ = seg.endpoint(*index);
  endpoint->index_ = *index;
  endpoint->role_ = role;
  endpoint->mode_ = options.wait;
  endpoint->spin_iterations_ = options.spin_iterations;
  EndpointEntry* e = endpoint->entry_;
  // We hold the entry's lock, so whoever wrote it is gone: read what it left (acquire pairs with
  // the previous owner's release store of `role`).
  PreviousOwner& prev = endpoint->previous_;
  prev.role = static_cast<Role>(e->role.load(std::memory_order_acquire));
  prev.pid = e->pid.load(std::memory_order_relaxed);
  prev.claim_ticket = e->claim_ticket.load(std::memory_order_relaxed);
  prev.held_ticket = e->held_ticket.load(std::memory_order_relaxed);
  Retire(endpoint->control_, e, prev.role);
  e->pid.store(static_cast<std::uint32_t>(getpid()), std::memory_order_relaxed);
  e->attach_time_ns.store(NowRealtimeNs(), std::memory_order_relaxed);
  e->generation.fetch_add(1, std::memory_order_relaxed);
  e->sleeping.store(0, std::memory_order_relaxed);
  // Relaxed: published by the release store of `role` below (pairs with ProducersDone [F3]).
  e->finished.store(0, std::memory_order_relaxed);
  if (prev.role != Role::kNone) {
    // Taking over from a dead process: the ring code inspects `previous()` before it resets the
    // tickets.
    endpoint->Count(&Counters::takeovers);
  } else {
    e->claim_ticket.store(kNoTicket, std::memory_order_relaxed);
    e->held_ticket.store(kNoTicket, std::memory_order_relaxed);
  }
  // Broadcast: no cursor until the subscriber places one (the publisher's scan ignores positions
  // beyond its own). Relaxed: published by the release store of `role`.
  e->cursor_position.store(kNoTicket, std::memory_order_relaxed);
  // Release: publishes pid/attach time with the role (pairs with acquire loads in readers).
  e->role.store(static_cast<std::uint32_t>(role), std::memory_order_release);
  return endpoint;
}

Endpoint::~Endpoint() {
  if (!segment_) return;
  Retire(control_, entry_, role_);
  entry_->claim_ticket.store(kNoTicket, std::memory_order_relaxed);
  entry_->held_ticket.store(kNoTicket, std::memory_order_relaxed);
  entry_->pid.store(0, std::memory_order_relaxed);
  // Release: the entry's final state is visible before it reads as free.
  entry_->role.store(static_cast<std::uint32_t>(Role::kNone), std::memory_order_release);
  // Closing the segment's fd drops the liveness lock.
}

void Endpoint::WakeSlow(WakeWord& wake, int count) {
  // Notify already cleared `waiting`.
  // Release: pairs with the waiter's acquire load of `word` before it sleeps.
  wake.word.fetch_add(1, std::memory_order_release);
  FutexWake(&wake.word, count);
  Count(&Counters::wakeups);
}

}  // namespace shmring::internal

namespace shmring {

absl::StatusOr<ChannelCounters> ReadChannelCounters(std::string_view name) {
  internal::OpenOptions open;
  open.access = internal::Access::kReadOnly;
  open.allow_shared_mode = true;  // reading statistics writes nothing
  absl::StatusOr<std::unique_ptr<internal::Segment>> segment = internal::Segment::Open(name, open);
  if (!segment.ok()) return segment.status();
  return internal::SumCounters(**segment);
}

}  // namespace shmring
