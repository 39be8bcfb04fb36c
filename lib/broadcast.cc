// broadcast.cc — one publisher, many subscribers over a byte ring (the contract; the algorithm
// follows in the next commit).
#include "shmring/broadcast.h"

#include "absl/strings/str_cat.h"
#include "endpoint.h"

namespace shmring {
namespace internal {
struct BroadcastPublisherState {
  std::unique_ptr<Endpoint> endpoint;
};
struct BroadcastSubscriberState {
  std::unique_ptr<Endpoint> endpoint;
};
}  // namespace internal

absl::StatusOr<BroadcastPublisher> BroadcastPublisher::Attach(std::string_view name,
                                                              const EndpointOptions&) {
  return absl::UnimplementedError(absl::StrCat("broadcast publisher for ", internal::AV(name)));
}
BroadcastPublisher::BroadcastPublisher(std::unique_ptr<internal::BroadcastPublisherState> state)
    : state_(std::move(state)) {}
BroadcastPublisher::BroadcastPublisher(BroadcastPublisher&&) noexcept = default;
BroadcastPublisher& BroadcastPublisher::operator=(BroadcastPublisher&&) noexcept = default;
BroadcastPublisher::~BroadcastPublisher() = default;
Claim BroadcastPublisher::try_claim(std::size_t) { return {Result::kClosed, {}, 0}; }
Claim BroadcastPublisher::claim(std::size_t, absl::Time) { return {Result::kClosed, {}, 0}; }
Result BroadcastPublisher::commit() { return Result::kOk; }
Result BroadcastPublisher::commit(std::size_t) { return Result::kOk; }
void BroadcastPublisher::commit_deferred() {}
void BroadcastPublisher::commit_deferred(std::size_t) {}
void BroadcastPublisher::flush() {}
void BroadcastPublisher::abort() {}
Result BroadcastPublisher::try_send(std::span<const std::byte>) { return Result::kClosed; }
Result BroadcastPublisher::send(std::span<const std::byte>, absl::Time) { return Result::kClosed; }
void BroadcastPublisher::close() {}
std::size_t BroadcastPublisher::max_frame() const { return 0; }
std::uint64_t BroadcastPublisher::next_sequence() const { return 0; }
std::string_view BroadcastPublisher::name() const { return {}; }
OverflowPolicy BroadcastPublisher::overflow() const { return OverflowPolicy::kBlock; }
ChannelCounters BroadcastPublisher::counters() const { return {}; }

absl::StatusOr<BroadcastSubscriber> BroadcastSubscriber::Attach(std::string_view name, StartAt,
                                                                const EndpointOptions&) {
  return absl::UnimplementedError(absl::StrCat("broadcast subscriber for ", internal::AV(name)));
}
BroadcastSubscriber::BroadcastSubscriber(std::unique_ptr<internal::BroadcastSubscriberState> state)
    : state_(std::move(state)) {}
BroadcastSubscriber::BroadcastSubscriber(BroadcastSubscriber&&) noexcept = default;
BroadcastSubscriber& BroadcastSubscriber::operator=(BroadcastSubscriber&&) noexcept = default;
BroadcastSubscriber::~BroadcastSubscriber() = default;
Frame BroadcastSubscriber::try_read() { return {Result::kClosed, false, {}, 0}; }
Frame BroadcastSubscriber::read(absl::Time) { return {Result::kClosed, false, {}, 0}; }
Result BroadcastSubscriber::release() { return Result::kOk; }
bool BroadcastSubscriber::intact() const { return false; }
Received BroadcastSubscriber::try_receive(std::span<std::byte>) { return {Result::kClosed, 0, 0}; }
Received BroadcastSubscriber::receive(std::span<std::byte>, absl::Time) {
  return {Result::kClosed, 0, 0};
}
std::uint64_t BroadcastSubscriber::last_missed() const { return 0; }
std::uint64_t BroadcastSubscriber::missed() const { return 0; }
std::size_t BroadcastSubscriber::max_frame() const { return 0; }
std::uint64_t BroadcastSubscriber::next_sequence() const { return 0; }
std::string_view BroadcastSubscriber::name() const { return {}; }
OverflowPolicy BroadcastSubscriber::overflow() const { return OverflowPolicy::kBlock; }
ChannelCounters BroadcastSubscriber::counters() const { return {}; }

}  // namespace shmring
