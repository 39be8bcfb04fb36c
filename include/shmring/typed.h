// typed.h — send and receive one value of a trivially copyable type as one frame, with size
// checks, on any endpoint (SpscProducer/MpmcProducer, SpscConsumer/MpmcConsumer).
//
// clang-format off
//   struct Job { std::uint64_t id; double weight; };
//   shmring::Result r = shmring::SendValue(*producer, Job{7, 0.5}, absl::Seconds(1));
//
//   Job job;
//   shmring::Received got = shmring::ReceiveValue(*consumer, &job, absl::Seconds(1));
//   if (got.ok()) run(job);
// clang-format on
//
// The bytes are copied as they are in memory: both sides must agree on the type's layout (same
// struct, same ABI). No pointers inside: they mean nothing in another process. Costs are those of
// send/receive plus a copy of sizeof(T) bytes.
#ifndef SHMRING_TYPED_H_
#define SHMRING_TYPED_H_

#include <cstring>
#include <span>
#include <type_traits>

#include "absl/time/time.h"
#include "shmring/result.h"

namespace shmring {

template <typename T>
concept TriviallyCopyable = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>;

// SendValue sends the sizeof(T) bytes of `value` as one frame; `wait` is an absl::Time deadline
// or an absl::Duration timeout. Results as Producer::send (kTooLarge if sizeof(T) > max_frame()).
template <TriviallyCopyable T, typename Producer, typename Wait>
[[nodiscard]] Result SendValue(Producer& producer, const T& value, Wait wait) {
  return producer.send(std::as_bytes(std::span(&value, 1)), wait);
}
template <TriviallyCopyable T, typename Producer>
[[nodiscard]] Result TrySendValue(Producer& producer, const T& value) {
  return producer.try_send(std::as_bytes(std::span(&value, 1)));
}

namespace internal {
// TakeValue copies a read frame into *out if it has exactly sizeof(T) bytes and releases it;
// otherwise leaves it unread and returns kTooLarge with the frame's size.
template <typename T, typename Consumer>
Received TakeValue(Consumer& consumer, const Frame& f, T* out) {
  if (!f.ok()) return {f.result, 0, f.sequence};
  if (f.data.size() != sizeof(T)) return {Result::kTooLarge, f.data.size(), f.sequence};
  std::memcpy(static_cast<void*>(out), f.data.data(), sizeof(T));
  consumer.release();
  return {Result::kOk, sizeof(T), f.sequence};
}
}  // namespace internal

// ReceiveValue reads the next frame into *out and releases it. A frame whose size is not exactly
// sizeof(T) — larger or smaller — is left unread: kTooLarge, Received::size says its size (read
// it with read()/receive() to get past it). Otherwise results as Consumer::read.
template <TriviallyCopyable T, typename Consumer, typename Wait>
[[nodiscard]] Received ReceiveValue(Consumer& consumer, T* out, Wait wait) {
  return internal::TakeValue(consumer, consumer.read(wait), out);
}
template <TriviallyCopyable T, typename Consumer>
[[nodiscard]] Received TryReceiveValue(Consumer& consumer, T* out) {
  return internal::TakeValue(consumer, consumer.try_read(), out);
}

}  // namespace shmring

#endif  // SHMRING_TYPED_H_
