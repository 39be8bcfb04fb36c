// _shmring.cc — the pybind11 extension behind `import shmring`: a thin layer over the public C++
// API (include/shmring/); the C++ library stays the one implementation.
//
// What this layer adds, and why:
// - Lent ring memory. A Claim (writable) or a Frame (read-only) lends a region of the ring to
//   Python as a memoryview over a small exporter object (Region). The Region counts the buffers
//   exported from it, so commit/abort/release can tell whether any view (the memoryview, a slice of
//   it, a numpy array over it) is still alive: then they refuse with BufferError and the frame or
//   claim stays outstanding (never a view of recycled ring memory). After a successful
//   commit/abort/release the Region is invalid and every view of it was released: access raises
//   ValueError. Each Region also keeps the C++ endpoint (and so the mapping) alive.
// - Blocking without the GIL. Every data-path call first tries the non-blocking C++ form with the
//   GIL held (the fast path: no syscall, no GIL hand-off). Only if it would block does it release
//   the GIL and call the blocking form with a deadline at most kSlice away, then take the GIL back
//   and run PyErr_CheckSignals, so Ctrl-C raises KeyboardInterrupt within about kSlice.
// - fork(). An endpoint belongs to the process that attached it. A child of fork() that inherits
//   the Python object gets shmring.InheritedEndpoint on use, and its destruction in the child does
//   not run the C++ destructor (which would detach the parent's endpoint); the child closes its
//   copies of the parent's endpoint descriptors (CloseInheritedDescriptors).
// - One thread at a time per endpoint (the C++ contract): a second thread that calls into an
//   endpoint while another is blocked in it gets RuntimeError instead of a data race.
//
// Adding a channel kind is one BindProducer/BindConsumer call with its C++ types, plus a Kind
// value in ParseKind: the templates below only use the calls every kind shares, except where a
// broadcast subscriber differs (`if constexpr (kBroadcast)` in Consumer: laps raise
// shmring.Lapped, and a copy is returned only once it was validated against the publisher).
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#include <pybind11/pybind11.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "shmring/shmring.h"

namespace py = pybind11;

namespace shmring::python {
namespace {

// kSlice: the longest wait without the GIL; bounds how late a signal (Ctrl-C) is seen.
constexpr absl::Duration kSlice = absl::Milliseconds(50);
// kHeldPolls: polls with the GIL held before a wait lets the GIL go (a few microseconds).
constexpr int kHeldPolls = 512;

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// ---------------------------------------------------------------------------------------------
// Exceptions. The classes live in shmring/_errors.py; the module keeps a reference to each.
struct ErrorClasses {
  py::object error, closed, corrupted, role_held, no_free_endpoint, abandoned, inherited, lapped;
};
ErrorClasses* errors = nullptr;  // set once at import; lives as long as the process

[[noreturn]] void Raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
}
[[noreturn]] void Raise(const py::object& type, const std::string& message) {
  Raise(type.ptr(), message);
}
// RaiseOsError raises `type` (an OSError subclass) with errno set, as the os module does.
[[noreturn]] void RaiseOsError(PyObject* type, int err, const std::string& message) {
  py::tuple args = py::make_tuple(err, message);
  PyErr_SetObject(type, args.ptr());
  throw py::error_already_set();
}

// RaiseStatus maps a setup error (create/remove/attach) to the documented exception.
[[noreturn]] void RaiseStatus(const absl::Status& status) {
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      RaiseOsError(PyExc_FileNotFoundError, ENOENT, message);
    case absl::StatusCode::kAlreadyExists:
      RaiseOsError(PyExc_FileExistsError, EEXIST, message);
    case absl::StatusCode::kPermissionDenied:
      RaiseOsError(PyExc_PermissionError, EACCES, message);
    case absl::StatusCode::kInvalidArgument:
      Raise(PyExc_ValueError, message);
    case absl::StatusCode::kDeadlineExceeded:
      Raise(PyExc_TimeoutError, message);
    case absl::StatusCode::kDataLoss:
      Raise(errors->corrupted, message);
    case absl::StatusCode::kResourceExhausted:
      Raise(errors->no_free_endpoint, message);
    case absl::StatusCode::kFailedPrecondition: {
      // The C++ API names the holder only in the message: "... role is held by pid N (alive)".
      constexpr std::string_view kHeld = "is held by pid ";
      const std::size_t at = message.find(kHeld);
      if (at != std::string::npos) {
        const long pid = std::strtol(message.c_str() + at + kHeld.size(), nullptr, 10);
        py::object e = errors->role_held(message, pid);
        PyErr_SetObject(errors->role_held.ptr(), e.ptr());
        throw py::error_already_set();
      }
      Raise(errors->error, message);
    }
    default:
      Raise(errors->error, message);
  }
}

// RaiseResult maps a data-path Result other than kOk to the documented exception.
[[noreturn]] void RaiseResult(Result result, const std::string& name, const char* what) {
  const std::string prefix = absl::StrCat(name, ": ");
  switch (result) {
    case Result::kTimeout:
    case Result::kWouldBlock:
      Raise(PyExc_TimeoutError, absl::StrCat(prefix, what, " before the timeout"));
    case Result::kClosed:
      Raise(errors->closed, absl::StrCat(prefix, "the channel is closed"));
    case Result::kCorrupted:
      Raise(errors->corrupted, absl::StrCat(prefix, "the segment holds an impossible frame"));
    case Result::kAbandoned:
      Raise(errors->abandoned,
            absl::StrCat(prefix, "this producer was taken for dead; the claim was dropped"));
    default:
      Raise(errors->error,
            absl::StrCat(prefix, "unexpected result ", std::string(ToString(result))));
  }
}

// RaiseLapped raises shmring.Lapped for a broadcast subscriber's gap: `missed` frames, the first
// of them `first`, were overwritten (or the subscriber was evicted) before it read them.
[[noreturn]] void RaiseLapped(const std::string& name, std::uint64_t first, std::uint64_t missed) {
  const std::string message = absl::StrCat(
      name, ": lapped: missed ", missed, " frame", missed == 1 ? "" : "s", " (sequence ", first,
      "..", first + missed - 1, "); the next receive continues at the oldest frame still held");
  py::object e = errors->lapped(message, missed, first);
  PyErr_SetObject(errors->lapped.ptr(), e.ptr());
  throw py::error_already_set();
}

// ---------------------------------------------------------------------------------------------
// Arguments.

// Timeout: None waits forever; a number of seconds >= 0 (0 tries once).
struct Timeout {
  bool infinite = true;
  double seconds = 0;
  bool zero() const { return !infinite && seconds <= 0; }
  absl::Time deadline() const {
    return infinite ? absl::InfiniteFuture() : absl::Now() + absl::Seconds(seconds);
  }
};

// ParseSeconds: None gives nullopt; otherwise a number of seconds >= 0 (TypeError for a
// non-number, ValueError for a negative or NaN one, both naming `arg`).
std::optional<double> ParseSeconds(py::handle value, const char* arg) {
  if (value.is_none()) return std::nullopt;
  PyObject* t = value.ptr();
  if (PyBool_Check(t) || (!PyFloat_Check(t) && !PyLong_Check(t))) {
    Raise(PyExc_TypeError,
          absl::StrCat(arg, " must be a number of seconds or None, not ", Py_TYPE(t)->tp_name));
  }
  const double seconds = PyFloat_AsDouble(t);
  if (seconds == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  if (std::isnan(seconds) || seconds < 0) {
    Raise(PyExc_ValueError, absl::StrCat(arg, " must be >= 0 seconds or None, got ", seconds));
  }
  return seconds;
}

Timeout ParseTimeout(py::handle timeout) {
  const std::optional<double> seconds = ParseSeconds(timeout, "timeout");
  if (!seconds) return {};
  return {false, *seconds};
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ParseEnum accepts a value of the bound enum E (shmring.<type>) or one of `names` (any case);
// ValueError names the `what` and the `choices`, TypeError the argument `arg`.
template <typename E, std::size_t N>
E ParseEnum(py::handle value, const char* arg, const char* what, const char* type,
            const std::array<std::pair<std::string_view, E>, N>& names, const char* choices) {
  if (py::isinstance<E>(value)) return value.cast<E>();
  if (py::isinstance<py::str>(value)) {
    const std::string s = Lower(value.cast<std::string>());
    for (const auto& [n, e] : names) {
      if (s == n) return e;
    }
    Raise(PyExc_ValueError, absl::StrCat("unknown ", what, " '", s, "' (", choices, ")"));
  }
  Raise(PyExc_TypeError, absl::StrCat(arg, " must be a shmring.", type, " or a string, not ",
                                      Py_TYPE(value.ptr())->tp_name));
}

// ParseKind accepts a Kind or its name ("spsc", "mpmc", "broadcast", any case).
Kind ParseKind(py::handle kind) {
  static constexpr std::array<std::pair<std::string_view, Kind>, 3> kNames = {
      {{"spsc", Kind::kSpsc}, {"mpmc", Kind::kMpmc}, {"broadcast", Kind::kBroadcast}}};
  return ParseEnum(kind, "kind", "channel kind", "Kind", kNames, "spsc, mpmc or broadcast");
}

// ParseOverflow accepts an OverflowPolicy or its name ("block", "overwrite").
OverflowPolicy ParseOverflow(py::handle overflow) {
  static constexpr std::array<std::pair<std::string_view, OverflowPolicy>, 2> kNames = {
      {{"block", OverflowPolicy::kBlock}, {"overwrite", OverflowPolicy::kOverwrite}}};
  return ParseEnum(overflow, "overflow", "overflow policy", "OverflowPolicy", kNames,
                   "block or overwrite");
}

// ParseStart accepts a StartAt or its name ("latest", "oldest").
StartAt ParseStart(py::handle start) {
  static constexpr std::array<std::pair<std::string_view, StartAt>, 2> kNames = {
      {{"latest", StartAt::kLatest}, {"oldest", StartAt::kOldest}}};
  return ParseEnum(start, "start", "start position", "StartAt", kNames, "latest or oldest");
}

// ParseEvictAfter: None (never evict) or a number of seconds >= 0 (inf: never).
absl::Duration ParseEvictAfter(py::handle evict_after) {
  const std::optional<double> seconds = ParseSeconds(evict_after, "evict_after");
  return seconds ? absl::Seconds(*seconds) : absl::InfiniteDuration();
}

// ParseWait accepts a WaitMode or its name ("spin", "block", "hybrid").
WaitMode ParseWait(py::handle wait) {
  static constexpr std::array<std::pair<std::string_view, WaitMode>, 3> kNames = {
      {{"spin", WaitMode::kSpin}, {"block", WaitMode::kBlock}, {"hybrid", WaitMode::kHybrid}}};
  return ParseEnum(wait, "wait", "wait mode", "WaitMode", kNames, "spin, block or hybrid");
}

EndpointOptions ParseEndpointOptions(py::handle wait, long long spin_iterations,
                                     double open_timeout, bool allow_shared_mode) {
  EndpointOptions options;
  options.wait = ParseWait(wait);
  if (spin_iterations < 0 || spin_iterations > UINT32_MAX) {
    Raise(PyExc_ValueError,
          absl::StrCat("spin_iterations must be in 0..2^32-1, got ", spin_iterations));
  }
  options.spin_iterations = static_cast<std::uint32_t>(spin_iterations);
  if (std::isnan(open_timeout) || open_timeout < 0) {
    Raise(PyExc_ValueError, absl::StrCat("open_timeout must be >= 0 seconds, got ", open_timeout));
  }
  options.open_timeout = absl::Seconds(open_timeout);
  options.allow_shared_mode = allow_shared_mode;
  return options;
}

// Buffer: a PyObject_GetBuffer export, released at scope exit. TypeError for a non-buffer (e.g.
// str) or, for a writable one, a read-only buffer (as socket.recv_into); ValueError for a
// writable buffer that is not contiguous. A readable buffer may be strided (a numpy slice):
// contiguous() says whether bytes() can be used as is, CopyTo() gathers it in C order.
class Buffer {
 public:
  enum Access { kRead, kWrite };
  Buffer(py::handle object, Access access) {
    const int flags = access == kWrite ? PyBUF_WRITABLE : PyBUF_FULL_RO;
    if (PyObject_GetBuffer(object.ptr(), &view_, flags) == 0) return;
    if (access == kRead || !PyObject_CheckBuffer(object.ptr())) throw py::error_already_set();
    PyErr_Clear();
    Py_buffer probe;
    if (PyObject_GetBuffer(object.ptr(), &probe, PyBUF_FULL_RO) != 0) throw py::error_already_set();
    const bool readonly = probe.readonly != 0;
    PyBuffer_Release(&probe);
    if (readonly) {
      Raise(PyExc_TypeError, absl::StrCat("recv_into needs a writable buffer, not ",
                                          Py_TYPE(object.ptr())->tp_name));
    }
    Raise(PyExc_ValueError, "recv_into needs a contiguous buffer");
  }
  ~Buffer() { PyBuffer_Release(&view_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  bool contiguous() const { return PyBuffer_IsContiguous(&view_, 'C') != 0; }
  std::span<std::byte> bytes() const {
    return {static_cast<std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }
  void CopyTo(std::span<std::byte> out) {
    if (PyBuffer_ToContiguous(out.data(), &view_, view_.len, 'C') != 0) {
      throw py::error_already_set();
    }
  }

 private:
  Py_buffer view_;
};

// ---------------------------------------------------------------------------------------------
// fork(): the child handler bumps the generation, so every endpoint of the parent becomes
// "inherited" in the child. A relaxed atomic: the handler runs in the child's only thread.
std::atomic<std::uint64_t> fork_generation{0};
void AfterForkInChild() { fork_generation.fetch_add(1, std::memory_order_relaxed); }

// LiveEndpoints: the channel names of the C++ endpoints alive in this process (one entry each).
// Only touched with the GIL held.
std::multiset<std::string>& LiveEndpoints() {
  static auto* live = new std::multiset<std::string>;
  return *live;
}

// Owned wraps a C++ endpoint in a shared_ptr whose deleter runs the destructor (which detaches)
// only in the process that attached it; in a child of fork() the object is left alone.
template <typename E>
std::shared_ptr<E> Owned(E endpoint) {
  const std::uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  std::string name(endpoint.name());
  LiveEndpoints().insert(name);
  return std::shared_ptr<E>(new E(std::move(endpoint)), [generation, name](E* e) {
    if (generation != fork_generation.load(std::memory_order_relaxed)) return;
    auto& live = LiveEndpoints();
    if (auto it = live.find(name); it != live.end()) live.erase(it);
    delete e;
  });
}

// CloseInheritedDescriptors runs in the child after a Python-initiated fork() (os.fork,
// multiprocessing's fork): it closes the child's copies of the parent's endpoint descriptors.
// Each endpoint's liveness lock lives on its open file description, which the child shares until
// it closes its copy; closed here, the parent's death is seen at once even while children live.
// (The inherited objects are never used nor destroyed in the child, so nothing closes them twice.)
void CloseInheritedDescriptors() {
  auto& live = LiveEndpoints();
  if (live.empty()) return;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  std::vector<int> inherited;
  constexpr std::string_view kShm = "/dev/shm", kDeleted = " (deleted)";
  while (const dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    char target[PATH_MAX];
    const std::string link = absl::StrCat("/proc/self/fd/", entry->d_name);
    const ssize_t n = readlink(link.c_str(), target, sizeof(target));
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof(target)) continue;
    std::string_view path(target, static_cast<std::size_t>(n));
    if (!path.starts_with(kShm)) continue;
    path.remove_prefix(kShm.size());
    if (path.ends_with(kDeleted)) path.remove_suffix(kDeleted.size());
    if (live.contains(std::string(path))) inherited.push_back(static_cast<int>(fd));
  }
  closedir(dir);
  for (int fd : inherited) close(fd);
  live.clear();
}

// ---------------------------------------------------------------------------------------------
// Region: the exporter behind a Claim's or a Frame's memoryview (a raw CPython type, since it
// needs bf_releasebuffer to count exports).
struct Region {
  PyObject ob_base;
  std::byte* data;
  Py_ssize_t size;
  bool writable;
  bool valid;
  Py_ssize_t exports;
  std::shared_ptr<void>* keepalive;  // the C++ endpoint: keeps the ring mapped
};

int RegionGetBuffer(PyObject* self, Py_buffer* view, int flags) {
  auto* r = reinterpret_cast<Region*>(self);
  if (!r->valid) {
    view->obj = nullptr;
    PyErr_SetString(PyExc_ValueError,
                    "shmring: this frame or claim was released; its ring memory is gone");
    return -1;
  }
  if (PyBuffer_FillInfo(view, self, r->data, r->size, r->writable ? 0 : 1, flags) != 0) return -1;
  ++r->exports;
  return 0;
}

void RegionReleaseBuffer(PyObject* self, Py_buffer*) { --reinterpret_cast<Region*>(self)->exports; }

void RegionDealloc(PyObject* self) {
  auto* r = reinterpret_cast<Region*>(self);
  delete r->keepalive;
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

PyTypeObject* region_type = nullptr;

void InitRegionType(py::module_& m) {
  static PyType_Slot slots[] = {
      {Py_bf_getbuffer, reinterpret_cast<void*>(&RegionGetBuffer)},
      {Py_bf_releasebuffer, reinterpret_cast<void*>(&RegionReleaseBuffer)},
      {Py_tp_dealloc, reinterpret_cast<void*>(&RegionDealloc)},
      {Py_tp_doc, const_cast<char*>("Ring memory lent to Python (internal).")},
      {0, nullptr},
  };
  static PyType_Spec spec = {"shmring._shmring._Region", sizeof(Region), 0, Py_TPFLAGS_DEFAULT,
                             slots};
  PyObject* type = PyType_FromSpec(&spec);
  if (type == nullptr) throw py::error_already_set();
  region_type = reinterpret_cast<PyTypeObject*>(type);
  m.add_object("_Region", py::reinterpret_borrow<py::object>(type));
}

// Lent: a ring region lent to Python, and its one cached memoryview.
class Lent {
 public:
  Lent(std::span<const std::byte> bytes, bool writable, std::shared_ptr<void> keepalive)
      : size_(bytes.size()) {
    PyObject* object = region_type->tp_alloc(region_type, 0);
    if (object == nullptr) throw py::error_already_set();
    region_ = py::reinterpret_steal<py::object>(object);
    Region* r = region();
    r->data = const_cast<std::byte*>(bytes.data());
    r->size = static_cast<Py_ssize_t>(bytes.size());
    r->writable = writable;
    r->valid = true;
    r->exports = 0;
    r->keepalive = new std::shared_ptr<void>(std::move(keepalive));
  }

  std::size_t size() const { return size_; }
  bool valid() const { return region()->valid; }

  // view returns the memoryview of the region (the same object each time); ValueError once the
  // region was given back.
  py::object view() {
    if (view_.is_none()) {
      PyObject* mv = PyMemoryView_FromObject(region_.ptr());
      if (mv == nullptr) throw py::error_already_set();
      view_ = py::reinterpret_steal<py::object>(mv);
    }
    return view_;
  }

  // TryInvalidate releases the cached memoryview and invalidates the region, unless some view of
  // it is still alive: then it returns false and the region stays valid (the caller must not give
  // the memory back). Never raises.
  bool TryInvalidate() {
    if (!view_.is_none()) {
      static PyObject* const release = PyUnicode_InternFromString("release");
      PyObject* result = PyObject_CallMethodNoArgs(view_.ptr(), release);
      if (result == nullptr) {  // BufferError: something was made from the memoryview itself
        PyErr_Clear();
        return false;
      }
      Py_DECREF(result);
      view_ = py::none();
    }
    Region* r = region();
    if (r->exports > 0) return false;  // a slice or another view of the region is alive
    r->valid = false;
    r->data = nullptr;
    r->size = 0;
    return true;
  }

 private:
  Region* region() const { return reinterpret_cast<Region*>(region_.ptr()); }
  std::size_t size_;
  py::object region_;
  py::object view_ = py::none();
};

[[noreturn]] void RaiseStillExported(const char* what, std::uint64_t sequence) {
  Raise(PyExc_BufferError,
        absl::StrCat("shmring: ", what, " ", sequence,
                     " still has views alive (a slice, a numpy array, memoryview(...) of its "
                     "data); drop them before giving it back"));
}

// ---------------------------------------------------------------------------------------------
// Endpoint: what producers and consumers of every kind share — the C++ endpoint, its fork
// generation, the busy flag, detach and the checks before each call.
template <typename E>
class Endpoint {
 public:
  Endpoint(std::shared_ptr<E> e, WaitMode wait)
      : endpoint_(std::move(e)),
        wait_(wait),
        generation_(fork_generation.load(std::memory_order_relaxed)),
        name_(endpoint_->name()),
        max_frame_(endpoint_->max_frame()) {}

  const std::string& name() const { return name_; }
  std::size_t max_frame() const { return max_frame_; }
  bool attached() const { return endpoint_ != nullptr; }
  // Broadcast endpoints only (instantiated only where bound).
  OverflowPolicy overflow() { return Use().overflow(); }

 protected:
  // Use returns the endpoint after checking it may be used here and now.
  E& Use() {
    if (!endpoint_) Raise(PyExc_ValueError, absl::StrCat(name_, ": the endpoint is detached"));
    if (generation_ != fork_generation.load(std::memory_order_relaxed)) {
      Raise(errors->inherited,
            absl::StrCat(name_,
                         ": this endpoint was attached by the parent process before "
                         "fork(); attach a new one in this process"));
    }
    if (busy_) {
      Raise(PyExc_RuntimeError,
            absl::StrCat(name_,
                         ": the endpoint is in use by another thread (an endpoint "
                         "belongs to one thread at a time)"));
    }
    return *endpoint_;
  }

  // Busy marks the endpoint in use while the GIL is released.
  class Busy {
   public:
    explicit Busy(Endpoint& e) : e_(e) { e_.busy_ = true; }
    ~Busy() { e_.busy_ = false; }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    Endpoint& e_;
  };

  // Wait returns `poll()` (a non-blocking C++ call) unless it would block; then, unless the
  // timeout is 0, it polls kHeldPolls more times with the GIL held (a hand-off of the GIL costs
  // more than a ping-pong round trip's wait; Python's own switch interval is 5 ms), and then
  // runs `attempt(deadline)` (the blocking C++ call) without the GIL in slices of at most
  // kSlice, checking for signals in between, until it returns something other than kTimeout
  // or the caller's deadline passes.
  template <typename Poll, typename Attempt>
  auto Wait(Poll&& poll, const Timeout& timeout, Attempt&& attempt) -> decltype(poll()) {
    using R = decltype(poll());
    R first = poll();
    if (first.result != Result::kWouldBlock) return first;
    if (timeout.zero()) {
      first.result = Result::kTimeout;
      return first;
    }
    if (wait_ != WaitMode::kBlock) {
      for (int i = 0; i < kHeldPolls; ++i) {
        Pause();
        first = poll();
        if (first.result != Result::kWouldBlock) return first;
      }
    }
    const absl::Time deadline = timeout.deadline();
    Busy busy(*this);
    for (;;) {
      R r;
      absl::Time slice_end;
      {
        py::gil_scoped_release nogil;
        slice_end = std::min(deadline, absl::Now() + kSlice);
        r = attempt(slice_end);
      }
      if (r.result != Result::kTimeout || slice_end >= deadline) return r;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  }

  void Detach() {
    if (!endpoint_) return;
    if (busy_) Use();  // raises: another thread is blocked in this endpoint
    endpoint_.reset();
  }

  std::shared_ptr<void> KeepAlive() const { return endpoint_; }

  std::shared_ptr<E> endpoint_;
  WaitMode wait_;
  std::uint64_t generation_;
  std::string name_;
  std::size_t max_frame_;
  bool busy_ = false;
};

// Adapts Result-returning C++ calls to the {result} shape Wait expects.
struct Status {
  Result result = Result::kWouldBlock;
};

// ---------------------------------------------------------------------------------------------
// Claim: a writable frame in the ring (zero-copy send).
class ClaimOwner {
 public:
  virtual ~ClaimOwner() = default;
  virtual void CommitClaim(std::size_t size) = 0;
  virtual void AbortClaim() = 0;
};

class PyClaim {
 public:
  PyClaim(ClaimOwner* owner, std::span<std::byte> data, std::uint64_t sequence,
          std::shared_ptr<void> keepalive)
      : owner_(owner), lent_(data, true, std::move(keepalive)), sequence_(sequence) {}

  py::object data() { return lent_.view(); }
  std::uint64_t sequence() const { return sequence_; }
  std::size_t size() const { return lent_.size(); }
  bool outstanding() const { return owner_ != nullptr; }

  void commit(py::object size) {
    ClaimOwner* owner = Owner();
    std::size_t n = lent_.size();
    if (!size.is_none()) {
      const long long s = size.cast<long long>();
      if (s < 0 || static_cast<std::size_t>(s) > lent_.size()) {
        Raise(PyExc_ValueError, absl::StrCat("commit size ", s, " is outside 0..", lent_.size(),
                                             " (the claimed size)"));
      }
      n = static_cast<std::size_t>(s);
    }
    if (!lent_.TryInvalidate()) RaiseStillExported("claim", sequence_);
    owner_ = nullptr;
    owner->CommitClaim(n);
  }

  void abort() {
    ClaimOwner* owner = Owner();
    if (!lent_.TryInvalidate()) RaiseStillExported("claim", sequence_);
    owner_ = nullptr;
    owner->AbortClaim();
  }

  // TryAbort aborts unless a view is alive (then the claim stays outstanding). Never raises.
  bool TryAbort() {
    if (owner_ == nullptr) return true;
    if (!lent_.TryInvalidate()) return false;
    ClaimOwner* owner = std::exchange(owner_, nullptr);
    owner->AbortClaim();
    return true;
  }

  // Forget: the producer is going away. Aborted if no view is alive; otherwise the claim is
  // left unpublished and its Region keeps the mapping alive for the views.
  void Forget() {
    if (!TryAbort()) owner_ = nullptr;
  }

  // Exit: commit on success; on an exception abort if possible, else leave the claim
  // outstanding (the producer aborts it once its views are gone) and let the exception through.
  void Exit(py::handle exc_type) {
    if (owner_ == nullptr) return;  // committed or aborted inside the block
    if (exc_type.is_none()) {
      commit(py::none());
    } else {
      TryAbort();
    }
  }

 private:
  ClaimOwner* Owner() const {
    if (owner_ == nullptr) {
      Raise(PyExc_ValueError,
            absl::StrCat("claim ", sequence_, " was already committed or aborted"));
    }
    return owner_;
  }
  ClaimOwner* owner_;  // null once committed or aborted (or the producer detached)
  Lent lent_;
  std::uint64_t sequence_;
};

// ---------------------------------------------------------------------------------------------
// Producer<P>: the writing end of any kind.
template <typename P>
class Producer final : public Endpoint<P>, public ClaimOwner {
  using Base = Endpoint<P>;

 public:
  static std::unique_ptr<Producer> Attach(const std::string& name, const EndpointOptions& options) {
    absl::StatusOr<P> p;
    {
      py::gil_scoped_release nogil;  // Attach may wait up to open_timeout for the creator
      p = P::Attach(name, options);
    }
    if (!p.ok()) RaiseStatus(p.status());
    return std::make_unique<Producer>(Owned(std::move(*p)), options.wait);
  }
  Producer(std::shared_ptr<P> p, WaitMode wait) : Base(std::move(p), wait) {}
  ~Producer() override { ForgetClaim(); }

  void send(py::handle data, py::handle timeout_arg) {
    const Timeout timeout = ParseTimeout(timeout_arg);
    P& p = Ready();
    Buffer buffer(data, Buffer::kRead);
    if (buffer.size() > this->max_frame_) RaiseTooLarge(buffer.size());
    if (!buffer.contiguous()) {  // a strided array: gathered straight into a claim, one copy
      const std::size_t n = buffer.size();
      const Claim c = this->Wait([&] { return p.try_claim(n); }, timeout,
                                 [&](absl::Time deadline) { return p.claim(n, deadline); });
      if (c.result != Result::kOk) RaiseResult(c.result, this->name_, "no room in the ring");
      try {
        buffer.CopyTo(c.data);
      } catch (...) {
        p.abort();
        throw;
      }
      CommitClaim(n);
      return;
    }
    const std::span<const std::byte> payload = buffer.bytes();
    const Status s =
        this->Wait([&] { return Status{p.try_send(payload)}; }, timeout,
                   [&](absl::Time deadline) { return Status{p.send(payload, deadline)}; });
    if (s.result != Result::kOk) RaiseResult(s.result, this->name_, "no room in the ring");
  }

  py::object claim(long long size, py::handle timeout_arg) {
    const Timeout timeout = ParseTimeout(timeout_arg);
    P& p = Ready();
    if (size < 0) Raise(PyExc_ValueError, absl::StrCat("claim size must be >= 0, got ", size));
    if (static_cast<unsigned long long>(size) > this->max_frame_) {
      RaiseTooLarge(static_cast<std::size_t>(size));
    }
    const auto n = static_cast<std::size_t>(size);
    const Claim c = this->Wait([&] { return p.try_claim(n); }, timeout,
                               [&](absl::Time deadline) { return p.claim(n, deadline); });
    if (c.result != Result::kOk) RaiseResult(c.result, this->name_, "no room in the ring");
    auto* claim = new PyClaim(this, c.data, c.sequence, this->KeepAlive());
    claim_ = py::cast(claim, py::return_value_policy::take_ownership);
    claim_ptr_ = claim;
    return claim_;
  }

  void close() {
    P& p = Ready();
    p.close();
  }

  void finish() {
    P& p = Ready();
    p.finish();
  }

  void detach() {
    if (!claim_.is_none() && !(*claim_ptr_).TryAbort()) {
      RaiseStillExported("claim", (*claim_ptr_).sequence());
    }
    claim_ = py::none();
    claim_ptr_ = nullptr;
    this->Detach();
  }

  std::uint64_t next_sequence() {
    P& p = this->Use();
    return p.next_sequence();
  }

  void CommitClaim(std::size_t size) override {
    P& p = this->Use();
    claim_ = py::none();
    claim_ptr_ = nullptr;
    if constexpr (std::is_same_v<decltype(p.commit(size)), void>) {
      p.commit(size);
    } else {
      const Result r = p.commit(size);
      if (r != Result::kOk) RaiseResult(r, this->name_, "commit");
    }
  }
  void AbortClaim() override {
    claim_ = py::none();
    claim_ptr_ = nullptr;
    if (this->endpoint_ && this->generation_ == fork_generation.load(std::memory_order_relaxed)) {
      this->endpoint_->abort();
    }
  }

 private:
  // Ready: Use(), after settling a claim left outstanding by an exception in its `with` block.
  P& Ready() {
    P& p = this->Use();
    if (!claim_.is_none()) {
      PyClaim& claim = (*claim_ptr_);
      if (!claim.TryAbort()) {
        Raise(PyExc_ValueError,
              absl::StrCat(this->name_, ": claim ", claim.sequence(),
                           " is outstanding: commit() or abort() it first (after dropping any "
                           "views of its data)"));
      }
    }
    return p;
  }

  // ForgetClaim cuts the outstanding claim loose (the producer is going away): aborted if its
  // views are gone; otherwise its Region keeps the endpoint alive until they are.
  void ForgetClaim() {
    if (claim_.is_none()) return;
    (*claim_ptr_).Forget();
    claim_ = py::none();
    claim_ptr_ = nullptr;
  }

  [[noreturn]] void RaiseTooLarge(std::size_t size) const {
    Raise(PyExc_ValueError,
          absl::StrCat(this->name_, ": a frame of ", size, " bytes is larger than max_frame (",
                       this->max_frame_, " bytes)"));
  }

  py::object claim_ = py::none();  // the outstanding PyClaim, or None
  PyClaim* claim_ptr_ = nullptr;   // the C++ object in claim_ (no pybind11 lookup per call)
};

// ---------------------------------------------------------------------------------------------
// Frame: a frame read in place (zero-copy receive).
class FrameOwner {
 public:
  virtual ~FrameOwner() = default;
  // ReleaseFrame gives the frame back. `report`: raise if the frame turned out overwritten while
  // it was held (broadcast: shmring.Lapped); otherwise the next read reports that.
  virtual void ReleaseFrame(bool report) = 0;
};

class PyFrame {
 public:
  PyFrame(FrameOwner* owner, std::span<const std::byte> data, std::uint64_t sequence,
          bool redelivered, std::shared_ptr<void> keepalive)
      : owner_(owner),
        lent_(data, false, std::move(keepalive)),
        sequence_(sequence),
        redelivered_(redelivered) {}

  py::object data() { return lent_.view(); }
  std::uint64_t sequence() const { return sequence_; }
  bool redelivered() const { return redelivered_; }
  std::size_t size() const { return lent_.size(); }
  bool held() const { return owner_ != nullptr; }

  void release() {
    if (owner_ == nullptr) return;  // already released: a no-op, like file.close()
    if (!lent_.TryInvalidate()) RaiseStillExported("frame", sequence_);
    std::exchange(owner_, nullptr)->ReleaseFrame(/*report=*/true);
  }

  // TryRelease releases unless a view is alive. Never raises.
  bool TryRelease() {
    if (owner_ == nullptr) return true;
    if (!lent_.TryInvalidate()) return false;
    std::exchange(owner_, nullptr)->ReleaseFrame(/*report=*/false);
    return true;
  }

  // Forget: the consumer is going away. The frame stays unreleased (the next consumer reads it
  // again, as after a crash); a live view keeps the mapping through its Region.
  void Forget() {
    lent_.TryInvalidate();
    owner_ = nullptr;
  }

  void Exit(py::handle exc_type) {
    if (exc_type.is_none()) {
      release();
    } else {
      TryRelease();  // if views are alive, the consumer releases it once they are gone
    }
  }

 private:
  FrameOwner* owner_;
  Lent lent_;
  std::uint64_t sequence_;
  bool redelivered_;
};

// Consumer<C>: the reading end of any kind. A broadcast subscriber (kBroadcast) differs in three
// ways: a lap raises shmring.Lapped with the exact count (and the next call continues at the oldest
// frame still held); a copy (recv, recv_into, iteration) goes through the C++ copying receive,
// which validates the frame after copying it, so a torn frame is never returned; and releasing a
// frame read in place raises Lapped if the publisher overwrote it meanwhile.
template <typename C>
class Consumer final : public Endpoint<C>, public FrameOwner {
  using Base = Endpoint<C>;
  static constexpr bool kBroadcast = std::is_same_v<C, BroadcastSubscriber>;

 public:
  static std::unique_ptr<Consumer> Attach(const std::string& name, const EndpointOptions& options,
                                          StartAt start = StartAt::kLatest) {
    absl::StatusOr<C> c;
    {
      py::gil_scoped_release nogil;
      if constexpr (kBroadcast) {
        c = C::Attach(name, start, options);
      } else {
        c = C::Attach(name, options);
      }
    }
    if (!c.ok()) RaiseStatus(c.status());
    return std::make_unique<Consumer>(Owned(std::move(*c)), options.wait);
  }
  Consumer(std::shared_ptr<C> c, WaitMode wait) : Base(std::move(c), wait) {}
  ~Consumer() override {
    if (!frame_.is_none()) (*frame_ptr_).Forget();
  }

  // recv: read in place, one copy into a new bytes object, release.
  py::bytes recv(py::handle timeout_arg) {
    const Timeout timeout = ParseTimeout(timeout_arg);
    if constexpr (kBroadcast) {
      py::object message = ReceiveValidated(timeout);
      if (message.is_none()) RaiseResult(Result::kClosed, this->name_, "no frame");
      return py::reinterpret_steal<py::bytes>(message.release());
    } else {
      const Frame f = Read(timeout);
      if (f.result != Result::kOk) RaiseResult(f.result, this->name_, "no frame");
      return Copy(f);
    }
  }

  std::size_t recv_into(py::handle buffer_arg, py::handle timeout_arg) {
    const Timeout timeout = ParseTimeout(timeout_arg);
    C& c = Ready();
    Buffer buffer(buffer_arg, Buffer::kWrite);
    const std::span<std::byte> out = buffer.bytes();
    const Received r = this->Wait([&] { return c.try_receive(out); }, timeout,
                                  [&](absl::Time deadline) { return c.receive(out, deadline); });
    if (r.result == Result::kLapped) RaiseLapped(this->name_, r.sequence, r.missed);
    if (r.result == Result::kTooLarge) {
      Raise(PyExc_ValueError, absl::StrCat(this->name_, ": the buffer (", out.size(),
                                           " bytes) is smaller than the next frame (", r.size,
                                           " bytes); the frame stays unread"));
    }
    if (r.result != Result::kOk) RaiseResult(r.result, this->name_, "no frame");
    return r.size;
  }

  py::object read(py::handle timeout_arg) {
    const Frame f = Read(ParseTimeout(timeout_arg));
    if (f.result != Result::kOk) RaiseRead(f);
    auto* frame = new PyFrame(this, f.data, f.sequence, f.redelivered, this->KeepAlive());
    frame_ = py::cast(frame, py::return_value_policy::take_ownership);
    frame_ptr_ = frame;
    return frame_;
  }

  // next: the iterator protocol — the next message, StopIteration at end-of-stream.
  py::bytes next() {
    if constexpr (kBroadcast) {
      py::object message = ReceiveValidated(Timeout{});
      if (message.is_none()) throw py::stop_iteration();
      return py::reinterpret_steal<py::bytes>(message.release());
    } else {
      const Frame f = Read(Timeout{});
      if (f.result == Result::kClosed) throw py::stop_iteration();
      if (f.result != Result::kOk) RaiseResult(f.result, this->name_, "no frame");
      return Copy(f);
    }
  }

  void detach() {
    if (!frame_.is_none() && !(*frame_ptr_).TryRelease()) {
      RaiseStillExported("frame", (*frame_ptr_).sequence());
    }
    frame_ = py::none();
    frame_ptr_ = nullptr;
    this->Detach();
  }

  std::uint64_t next_sequence() {
    C& c = this->Use();
    return c.next_sequence();
  }

  void ReleaseFrame(bool report) override {
    frame_ = py::none();
    frame_ptr_ = nullptr;
    if (!this->endpoint_ || this->generation_ != fork_generation.load(std::memory_order_relaxed)) {
      return;
    }
    if constexpr (kBroadcast) {
      if (this->endpoint_->release() == Result::kOk || !report) return;
      // Overwritten while held: the next read reports the lap, this frame included; report it
      // now instead, so the exception carries the exact count and the next read goes on.
      const Frame lap = this->endpoint_->try_read();
      if (lap.result == Result::kLapped || lap.result == Result::kCorrupted) RaiseRead(lap);
      // The lap is still settling (kWouldBlock): the count comes with the next read.
      Raise(errors->lapped,
            absl::StrCat(this->name_,
                         ": the frame was overwritten while it was held; discard "
                         "what was read from it (the next read reports the count)"));
    } else {
      this->endpoint_->release();
    }
  }

  // Broadcast subscribers only.
  std::uint64_t missed() { return this->Use().missed(); }
  std::uint64_t last_missed() { return this->Use().last_missed(); }

 private:
  // RaiseRead raises what a read that returned `f` (not kOk) means.
  [[noreturn]] void RaiseRead(const Frame& f) {
    if constexpr (kBroadcast) {
      if (f.result == Result::kLapped) {
        RaiseLapped(this->name_, f.sequence, this->endpoint_->last_missed());
      }
    }
    RaiseResult(f.result, this->name_, "no frame");
  }

  // ReceiveValidated (broadcast): the next frame as a new bytes object, copied by the C++
  // copying receive (validated after the copy: never a torn frame), or None at end-of-stream.
  // Reading the frame in place first gives its size, so the bytes object is allocated once, at
  // the exact size; try_receive then copies that same held frame (or reports the lap that
  // overwrote it meanwhile).
  py::object ReceiveValidated(const Timeout& timeout) {
    C& c = Ready();
    for (;;) {
      const Frame f = this->Wait([&] { return c.try_read(); }, timeout,
                                 [&](absl::Time deadline) { return c.read(deadline); });
      if (f.result == Result::kClosed) return py::none();
      if (f.result != Result::kOk) RaiseRead(f);
      PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(f.data.size()));
      if (bytes == nullptr) throw py::error_already_set();  // the frame stays unread
      py::object out = py::reinterpret_steal<py::object>(bytes);
      const Received r = c.try_receive(std::span<std::byte>(
          reinterpret_cast<std::byte*>(PyBytes_AS_STRING(bytes)), f.data.size()));
      if (r.result == Result::kOk) return out;
      if (r.result == Result::kLapped) RaiseLapped(this->name_, r.sequence, r.missed);
      // kWouldBlock: torn during the copy, and the lap is still settling: read again.
      if (r.result != Result::kWouldBlock) RaiseResult(r.result, this->name_, "no frame");
    }
  }

  C& Ready() {
    C& c = this->Use();
    if (!frame_.is_none()) {
      PyFrame& frame = (*frame_ptr_);
      if (!frame.TryRelease()) RaiseStillExported("frame", frame.sequence());
    }
    return c;
  }

  Frame Read(const Timeout& timeout) {
    C& c = Ready();
    return this->Wait([&] { return c.try_read(); }, timeout,
                      [&](absl::Time deadline) { return c.read(deadline); });
  }

  py::bytes Copy(const Frame& f) {
    PyObject* bytes = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(f.data.data()),
                                                static_cast<Py_ssize_t>(f.data.size()));
    if (bytes == nullptr) throw py::error_already_set();  // the frame stays unread
    this->endpoint_->release();
    return py::reinterpret_steal<py::bytes>(bytes);
  }

  py::object frame_ = py::none();  // the outstanding PyFrame, or None
  PyFrame* frame_ptr_ = nullptr;   // the C++ object in frame_ (no pybind11 lookup per call)
};

// ---------------------------------------------------------------------------------------------
// Python classes.

constexpr const char* kEndpointInitDoc =
    "Attach to the channel `name` (with or without the leading '/').\n\n"
    "wait: 'hybrid' (spin, then sleep; default), 'spin' or 'block' (or a shmring.WaitMode).\n"
    "spin_iterations: polls before a hybrid wait sleeps. open_timeout: seconds to wait for a\n"
    "channel still being initialised. allow_shared_mode: accept group/other-writable channels.\n\n"
    "Raises FileNotFoundError, PermissionError, ValueError (bad name), shmring.RoleHeld (SPSC,\n"
    "broadcast publisher: the role is held by a live process, .pid), shmring.NoFreeEndpoint\n"
    "(MPMC, broadcast subscribers: max_endpoints attached), shmring.Corrupted, shmring.Error\n"
    "(wrong kind, ABI version), TimeoutError.";

constexpr const char* kSubscriberInitDoc =
    "Attach a subscriber to the broadcast channel `name` (with or without the leading '/').\n\n"
    "start: 'latest' (default: the next frame published) or 'oldest' (the oldest frame the\n"
    "ring still holds: a history replay), or a shmring.StartAt. Other options as every\n"
    "endpoint: wait ('hybrid', 'spin', 'block'), spin_iterations, open_timeout,\n"
    "allow_shared_mode.\n\n"
    "Raises FileNotFoundError, PermissionError, ValueError (bad name or start),\n"
    "shmring.NoFreeEndpoint (max_endpoints subscribers attached), shmring.Corrupted,\n"
    "shmring.Error (not a broadcast channel, ABI version), TimeoutError.";

// BindInit binds T(name, *, [start,] wait, spin_iterations, open_timeout, allow_shared_mode);
// `start` only for a broadcast subscriber.
template <typename T>
void BindInit(py::class_<T>& cls) {
  if constexpr (std::is_same_v<T, Consumer<BroadcastSubscriber>>) {
    cls.def(py::init([](const std::string& name, py::handle start, py::handle wait,
                        long long spin_iterations, double open_timeout, bool allow_shared_mode) {
              const StartAt at = ParseStart(start);
              return T::Attach(
                  name,
                  ParseEndpointOptions(wait, spin_iterations, open_timeout, allow_shared_mode), at);
            }),
            py::arg("name"), py::kw_only(), py::arg("start") = "latest", py::arg("wait") = "hybrid",
            py::arg("spin_iterations") = 20000, py::arg("open_timeout") = 5.0,
            py::arg("allow_shared_mode") = false, kSubscriberInitDoc);
  } else {
    cls.def(py::init([](const std::string& name, py::handle wait, long long spin_iterations,
                        double open_timeout, bool allow_shared_mode) {
              return T::Attach(name, ParseEndpointOptions(wait, spin_iterations, open_timeout,
                                                          allow_shared_mode));
            }),
            py::arg("name"), py::kw_only(), py::arg("wait") = "hybrid",
            py::arg("spin_iterations") = 20000, py::arg("open_timeout") = 5.0,
            py::arg("allow_shared_mode") = false, kEndpointInitDoc);
  }
}

template <typename T>
void BindEndpointCommon(py::class_<T>& cls) {
  BindInit(cls);
  cls  // Lambdas, not &T::name: GCC 12's UBSan vptr check fails every call made through a pointer
       // to a member of the non-polymorphic base Endpoint<E> converted to one of T.
      .def_property_readonly(
          "name", [](const T& self) { return self.name(); },
          "The channel's canonical name ('/...').")
      .def_property_readonly(
          "max_frame", [](const T& self) { return self.max_frame(); },
          "The largest payload in bytes.")
      .def_property_readonly(
          "attached", [](const T& self) { return self.attached(); }, "False once detached.")
      .def("detach", &T::detach,
           "Detach from the channel (the role or entry becomes free); idempotent. Raises\n"
           "BufferError if a view of an outstanding frame/claim is still alive.")
      .def("__enter__", [](py::object self) { return self; })
      .def(
          "__exit__", [](T& self, py::handle, py::handle, py::handle) { self.detach(); }, "Detach.")
      .def("__repr__", [cls_name = std::string(py::str(cls.attr("__name__")))](const T& self) {
        return absl::StrCat("<shmring.", cls_name, " '", self.name(), "'",
                            self.attached() ? "" : " detached", ">");
      });
}

// Fast methods. The hot calls (send, claim, recv, recv_into, read, __next__) skip pybind11's
// generic dispatcher (an argument tuple, overload resolution and casters per call): they are
// METH_FASTCALL methods of the class, which halves what a 64 B send+recv costs in Python.

// Self returns the C++ object behind a pybind11 instance of T (TypeError if not constructed).
template <typename T>
T& Self(PyObject* self) {
  static const py::detail::type_info* info = py::detail::get_type_info(typeid(T));
  auto* instance = reinterpret_cast<py::detail::instance*>(self);
  py::detail::value_and_holder v = instance->get_value_and_holder(info, false);
  if (!v || !v.holder_constructed()) Raise(PyExc_TypeError, "shmring: endpoint not initialised");
  return *v.template value_ptr<T>();
}

// ParseArgs sorts positional and keyword arguments into `names` order (nullptr if absent); the
// first `required` are required.
template <std::size_t N>
std::array<PyObject*, N> ParseArgs(const char* method, const std::array<const char*, N>& names,
                                   std::size_t required, PyObject* const* args, Py_ssize_t nargs,
                                   PyObject* kwnames) {
  std::array<PyObject*, N> out{};
  if (static_cast<std::size_t>(nargs) > N) {
    Raise(PyExc_TypeError,
          absl::StrCat(method, "() takes at most ", N, " arguments (", nargs, " given)"));
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    const char* key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
    if (key == nullptr) throw py::error_already_set();
    std::size_t j = 0;
    while (j < N && std::strcmp(key, names[j]) != 0) ++j;
    if (j == N) {
      Raise(PyExc_TypeError,
            absl::StrCat(method, "() got an unexpected keyword argument '", key, "'"));
    }
    if (out[j] != nullptr) {
      Raise(PyExc_TypeError,
            absl::StrCat(method, "() got multiple values for argument '", key, "'"));
    }
    out[j] = args[nargs + k];
  }
  for (std::size_t j = 0; j < required; ++j) {
    if (out[j] == nullptr) {
      Raise(PyExc_TypeError, absl::StrCat(method, "() missing required argument '", names[j], "'"));
    }
  }
  return out;
}

py::handle OrNone(PyObject* o) { return o == nullptr ? py::handle(Py_None) : py::handle(o); }

// Guard turns C++ exceptions into a Python error for a raw CPython entry point.
template <typename F>
PyObject* Guard(F&& f) {
  try {
    return f().release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

template <typename T>
PyObject* FastSend(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return Guard([&] {
    const auto a = ParseArgs<2>("send", {"data", "timeout"}, 1, args, nargs, kwnames);
    Self<T>(self).send(a[0], OrNone(a[1]));
    return py::none();
  });
}
template <typename T>
PyObject* FastClaim(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return Guard([&] {
    const auto a = ParseArgs<2>("claim", {"size", "timeout"}, 1, args, nargs, kwnames);
    if (!PyLong_Check(a[0])) {
      Raise(PyExc_TypeError,
            absl::StrCat("claim size must be an int, not ", Py_TYPE(a[0])->tp_name));
    }
    const long long size = PyLong_AsLongLong(a[0]);
    if (size == -1 && PyErr_Occurred()) throw py::error_already_set();
    return Self<T>(self).claim(size, OrNone(a[1]));
  });
}
template <typename T>
PyObject* FastRecv(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return Guard([&] {
    const auto a = ParseArgs<1>("recv", {"timeout"}, 0, args, nargs, kwnames);
    return Self<T>(self).recv(OrNone(a[0]));
  });
}
template <typename T>
PyObject* FastRecvInto(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return Guard([&] {
    const auto a = ParseArgs<2>("recv_into", {"buffer", "timeout"}, 1, args, nargs, kwnames);
    return py::int_(Self<T>(self).recv_into(a[0], OrNone(a[1])));
  });
}
template <typename T>
PyObject* FastRead(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return Guard([&] {
    const auto a = ParseArgs<1>("read", {"timeout"}, 0, args, nargs, kwnames);
    return Self<T>(self).read(OrNone(a[0]));
  });
}
template <typename T>
PyObject* FastNext(PyObject* self, PyObject* const*, Py_ssize_t nargs, PyObject*) {
  return Guard([&]() -> py::object {
    if (nargs != 0) Raise(PyExc_TypeError, "__next__() takes no arguments");
    return Self<T>(self).next();
  });
}

// AddFastMethod installs `def` (static storage) as a method of `cls`.
template <typename T>
void AddFastMethod(py::class_<T>& cls, PyMethodDef* def) {
  PyObject* descriptor = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), def);
  if (descriptor == nullptr) throw py::error_already_set();
  cls.attr(def->ml_name) = py::reinterpret_steal<py::object>(descriptor);
}

template <auto F>
PyCFunction AsCFunction() {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(F));
}
constexpr int kFastFlags = METH_FASTCALL | METH_KEYWORDS;

// Claim and Frame: the per-frame calls, fast the same way.
template <typename T>
PyObject* DataOf(PyObject* self, void*) {
  return Guard([&] { return Self<T>(self).data(); });
}
PyObject* FastEnter(PyObject* self, PyObject*) { return Py_NewRef(self); }
template <typename T>
PyObject* FastExit(PyObject* self, PyObject* args) {
  return Guard([&] {
    if (PyTuple_GET_SIZE(args) != 3) Raise(PyExc_TypeError, "__exit__() takes 3 arguments");
    Self<T>(self).Exit(PyTuple_GET_ITEM(args, 0));
    return py::none();
  });
}
PyObject* FastCommit(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return Guard([&] {
    const auto a = ParseArgs<1>("commit", {"size"}, 0, args, nargs, kwnames);
    Self<PyClaim>(self).commit(py::reinterpret_borrow<py::object>(OrNone(a[0])));
    return py::none();
  });
}
PyObject* FastRelease(PyObject* self, PyObject*) {
  return Guard([&] {
    Self<PyFrame>(self).release();
    return py::none();
  });
}

// AddFastGetter installs `def` (static storage) as a read-only property of `cls`.
template <typename T>
void AddFastGetter(py::class_<T>& cls, PyGetSetDef* def) {
  PyObject* descriptor = PyDescr_NewGetSet(reinterpret_cast<PyTypeObject*>(cls.ptr()), def);
  if (descriptor == nullptr) throw py::error_already_set();
  cls.attr(def->name) = py::reinterpret_steal<py::object>(descriptor);
}

// BindOverflow: the broadcast endpoints' `overflow` property.
template <typename T>
void BindOverflow(py::class_<T>& cls) {
  cls.def_property_readonly(
      "overflow", [](T& self) { return self.overflow(); },
      "The channel's shmring.OverflowPolicy (BLOCK or OVERWRITE), fixed at creation.");
}

template <typename P>
void BindProducer(py::module_& m, const char* name, const char* doc) {
  using T = Producer<P>;
  py::class_<T> cls(m, name, doc);
  BindEndpointCommon(cls);
  static PyMethodDef send = {
      "send", AsCFunction<&FastSend<T>>(), kFastFlags,
      "send($self, /, data, timeout=None)\n--\n\n"
      "Copy `data` (any buffer: bytes, bytearray, memoryview, numpy array, array.array;\n"
      "strided ones are gathered) into the ring as one frame. Waits for room up to `timeout`\n"
      "seconds (None: forever; 0: try once) with the GIL released.\n"
      "Raises TypeError (not a buffer), ValueError (larger than max_frame), TimeoutError,\n"
      "shmring.ChannelClosed, shmring.Abandoned (MPMC)."};
  static PyMethodDef claim = {
      "claim", AsCFunction<&FastClaim<T>>(), kFastFlags,
      "claim($self, /, size, timeout=None)\n--\n\n"
      "Reserve a frame of `size` bytes in the ring and return a Claim whose .data is a\n"
      "writable memoryview into the ring. `with producer.claim(n) as c:` commits at exit,\n"
      "aborts on an exception. Errors as send()."};
  AddFastMethod(cls, &send);
  AddFastMethod(cls, &claim);
  cls.def("close", &T::close,
          "Mark end-of-stream: consumers drain what was sent, then see the end (recv raises\n"
          "shmring.ChannelClosed, iteration stops). Does not detach.");
  if constexpr (requires(P & p) { p.finish(); }) {
    cls.def("finish", &T::finish,
            "End this producer's part of the stream: the stream ends (consumers drain, then\n"
            "see the end) once every producer attached to the channel has finished, detached\n"
            "or died. Attach every producer before the first one can finish. Idempotent.");
  }
  if constexpr (requires(P & p) { p.next_sequence(); }) {
    cls.def_property_readonly("next_sequence", &T::next_sequence,
                              "The sequence number of the next frame sent.");
  }
  if constexpr (requires(P & p) { p.overflow(); }) {
    BindOverflow(cls);
  }
}

template <typename C>
void BindConsumer(py::module_& m, const char* name, const char* doc) {
  using T = Consumer<C>;
  py::class_<T> cls(m, name, doc);
  BindEndpointCommon(cls);
  static PyMethodDef recv = {
      "recv", AsCFunction<&FastRecv<T>>(), kFastFlags,
      "recv($self, /, timeout=None)\n--\n\n"
      "Receive the next frame as bytes (one copy). Waits up to `timeout` seconds (None:\n"
      "forever; 0: try once) with the GIL released. Raises TimeoutError,\n"
      "shmring.ChannelClosed (closed and drained), shmring.Corrupted; broadcast:\n"
      "shmring.Lapped (.missed frames from .sequence were lost; the next call continues\n"
      "at the oldest frame still held). A broadcast frame is validated after the copy:\n"
      "a torn frame is never returned."};
  static PyMethodDef recv_into = {
      "recv_into", AsCFunction<&FastRecvInto<T>>(), kFastFlags,
      "recv_into($self, /, buffer, timeout=None)\n--\n\n"
      "Copy the next frame into `buffer` (any writable contiguous buffer) and return its\n"
      "size. ValueError if the buffer is too small (the frame stays unread), TypeError if it\n"
      "is read-only; else as recv."};
  static PyMethodDef read = {
      "read", AsCFunction<&FastRead<T>>(), kFastFlags,
      "read($self, /, timeout=None)\n--\n\n"
      "Read the next frame in place: a Frame whose .data is a read-only memoryview into\n"
      "the ring. `with consumer.read() as f:` releases it at exit. Errors as recv().\n"
      "Broadcast: the publisher may overwrite the frame while it is held; then release()\n"
      "(and so the end of the `with` block) raises shmring.Lapped: act on what was read\n"
      "only after release() returned."};
  static PyMethodDef next = {
      "__next__", AsCFunction<&FastNext<T>>(), kFastFlags,
      "The next message (bytes); StopIteration once the channel is closed and drained.\n"
      "Broadcast: raises shmring.Lapped on a gap; iterate again to go on."};
  AddFastMethod(cls, &recv);
  AddFastMethod(cls, &recv_into);
  AddFastMethod(cls, &read);
  cls.def("__iter__", [](py::object self) { return self; });
  AddFastMethod(cls, &next);
  if constexpr (requires(C & c) { c.next_sequence(); }) {
    cls.def_property_readonly("next_sequence", &T::next_sequence,
                              "The sequence number of the next frame to read.");
  }
  if constexpr (requires(C & c) { c.missed(); }) {
    BindOverflow(cls);
    cls.def_property_readonly("missed", &T::missed,
                              "Frames skipped by every lap (or eviction) since this subscriber\n"
                              "attached.");
    cls.def_property_readonly("last_missed", &T::last_missed,
                              "Frames the most recent shmring.Lapped skipped (0 before any).");
  }
}

void CreateChannelPy(const std::string& name, py::handle kind, long long capacity,
                     long long max_frame, long long max_endpoints, long long mode,
                     bool reclaim_stale, py::handle overflow, py::handle evict_after) {
  ChannelOptions options;
  options.kind = ParseKind(kind);
  options.overflow = ParseOverflow(overflow);
  options.evict_after = ParseEvictAfter(evict_after);
  auto check = [](const char* what, long long v, long long lo, long long hi) {
    if (v < lo || v > hi) {
      Raise(PyExc_ValueError, absl::StrCat(what, " must be in ", lo, "..", hi, ", got ", v));
    }
  };
  check("capacity", capacity, 1, INT64_MAX);
  check("max_frame", max_frame, 0, UINT32_MAX);
  check("max_endpoints", max_endpoints, 1, UINT32_MAX);
  check("mode", mode, 0, 07777);
  options.capacity = static_cast<std::uint64_t>(capacity);
  options.max_frame = static_cast<std::uint32_t>(max_frame);
  options.max_endpoints = static_cast<std::uint32_t>(max_endpoints);
  options.mode = static_cast<mode_t>(mode);
  options.reclaim_stale = reclaim_stale;
  absl::Status status;
  {
    py::gil_scoped_release nogil;
    status = CreateChannel(name, options);
  }
  if (!status.ok()) RaiseStatus(status);
}

void RemoveChannelPy(const std::string& name) {
  const absl::Status status = RemoveChannel(name);
  if (!status.ok()) RaiseStatus(status);
}

py::dict RoleCountersDict(const RoleCounters& c) {
  py::dict d;
  d["frames"] = c.frames;
  d["bytes"] = c.bytes;
  d["wakeups"] = c.wakeups;
  d["waits"] = c.waits;
  d["abandoned"] = c.abandoned;
  d["takeovers"] = c.takeovers;
  d["redelivered"] = c.redelivered;
  d["missed"] = c.missed;
  d["lapped"] = c.lapped;
  d["evicted"] = c.evicted;
  return d;
}

py::dict ChannelCountersPy(const std::string& name) {
  absl::StatusOr<ChannelCounters> counters;
  {
    py::gil_scoped_release nogil;  // may wait up to open_timeout for the creator
    counters = ReadChannelCounters(name);
  }
  if (!counters.ok()) RaiseStatus(counters.status());
  py::dict d;
  d["producers"] = RoleCountersDict(counters->producers);
  d["consumers"] = RoleCountersDict(counters->consumers);
  return d;
}

}  // namespace

void InitModule(py::module_& m) {
  m.doc() = "The compiled part of shmring (use `import shmring`).";
  py::module_ errors_module = py::module_::import("shmring._errors");
  errors = new ErrorClasses{
      errors_module.attr("Error"),
      errors_module.attr("ChannelClosed"),
      errors_module.attr("Corrupted"),
      errors_module.attr("RoleHeld"),
      errors_module.attr("NoFreeEndpoint"),
      errors_module.attr("Abandoned"),
      errors_module.attr("InheritedEndpoint"),
      errors_module.attr("Lapped"),
  };
  if (pthread_atfork(nullptr, nullptr, &AfterForkInChild) != 0) {
    throw std::runtime_error("pthread_atfork failed");
  }
  InitRegionType(m);

  py::enum_<Kind>(m, "Kind", "The ring algorithm of a channel, fixed at creation.")
      .value("SPSC", Kind::kSpsc, "one producer, one consumer, variable-length frames")
      .value("MPMC", Kind::kMpmc, "many producers, competing consumers, fixed-size slots")
      .value("BROADCAST", Kind::kBroadcast,
             "one publisher, many subscribers each reading every frame");
  py::enum_<OverflowPolicy>(m, "OverflowPolicy",
                            "What a broadcast publisher does when a subscriber has not read the "
                            "oldest frame yet.")
      .value("BLOCK", OverflowPolicy::kBlock,
             "lossless: wait for it (a live one that holds the publisher for evict_after is "
             "evicted; a dead one stops counting at once)")
      .value("OVERWRITE", OverflowPolicy::kOverwrite,
             "lossy: never wait; a lapped subscriber gets shmring.Lapped with the exact count");
  py::enum_<StartAt>(m, "StartAt", "Where a new broadcast subscriber starts reading.")
      .value("LATEST", StartAt::kLatest, "the next frame published after it attached (default)")
      .value("OLDEST", StartAt::kOldest, "the oldest frame the ring still holds (history replay)");
  py::enum_<WaitMode>(m, "WaitMode", "How a blocking call waits for the other side.")
      .value("SPIN", WaitMode::kSpin, "busy-poll: lowest latency, burns a core")
      .value("BLOCK", WaitMode::kBlock, "sleep on the futex at once")
      .value("HYBRID", WaitMode::kHybrid, "spin spin_iterations polls, then sleep (default)");

  m.def("create_channel", &CreateChannelPy, py::arg("name"), py::kw_only(),
        py::arg("kind") = "spsc", py::arg("capacity") = 1 << 20, py::arg("max_frame") = 0,
        py::arg("max_endpoints") = 64, py::arg("mode") = 0600, py::arg("reclaim_stale") = false,
        py::arg("overflow") = "block", py::arg("evict_after") = 1.0,
        "Create the channel `name` (exclusively) and initialise it; attaches nothing.\n\n"
        "kind: 'spsc' (default), 'mpmc' or 'broadcast'. capacity: SPSC and broadcast bytes\n"
        "(power of two, >= 4096, default 1 MiB), MPMC slots (power of two, >= 2). max_frame:\n"
        "largest payload (0: the largest allowed). max_endpoints: MPMC producers+consumers,\n"
        "broadcast subscribers at once (1..4096). mode: permission bits (0o600).\n"
        "reclaim_stale: replace an object whose endpoints are all dead.\n"
        "Broadcast only: overflow: 'block' (lossless, default) or 'overwrite' (lossy, the\n"
        "publisher never waits), or a shmring.OverflowPolicy; evict_after: seconds a live\n"
        "subscriber may hold a blocked publisher before it is evicted (it then gets\n"
        "shmring.Lapped with the count it missed), default 1.0, None: never.\n"
        "Raises ValueError (bad name, geometry, overflow other than 'block' for another\n"
        "kind, negative evict_after), TypeError, FileExistsError, PermissionError.");
  m.def("_close_inherited_descriptors", &CloseInheritedDescriptors,
        "Internal: run in the child after fork() (shmring/__init__.py registers it).");
  m.def("channel_counters", &ChannelCountersPy, py::arg("name"),
        "The channel's statistics by role: {'producers': {...}, 'consumers': {...}}, each with\n"
        "frames, bytes, wakeups, waits, abandoned, takeovers, redelivered, missed, lapped,\n"
        "evicted (summed over every endpoint that is or was attached; a broadcast publisher\n"
        "counts as a producer, subscribers as consumers). Read-only; raises as remove_channel.");
  m.def("remove_channel", &RemoveChannelPy, py::arg("name"),
        "Unlink the channel `name`; attached endpoints keep working until they detach.\n"
        "Raises FileNotFoundError, ValueError (bad name), PermissionError.");

  py::class_<PyClaim> claim(m, "Claim",
                            "A frame reserved in the ring by Producer.claim(): fill .data, then "
                            "commit.");
  static PyGetSetDef claim_data = {
      "data", &DataOf<PyClaim>, nullptr,
      "Writable memoryview of the claimed bytes, in the ring. Released (ValueError on access)\n"
      "once the claim is committed or aborted.",
      nullptr};
  AddFastGetter(claim, &claim_data);
  static PyMethodDef claim_commit = {
      "commit", AsCFunction<&FastCommit>(), kFastFlags,
      "commit($self, /, size=None)\n--\n\n"
      "Publish the frame (all of it, or its first `size` bytes). BufferError if a view of\n"
      ".data other than .data itself is still alive (the claim stays outstanding)."};
  static PyMethodDef claim_enter = {"__enter__", AsCFunction<&FastEnter>(), METH_NOARGS, nullptr};
  static PyMethodDef claim_exit = {"__exit__", AsCFunction<&FastExit<PyClaim>>(), METH_VARARGS,
                                   "Commit; abort if the block raised."};
  AddFastMethod(claim, &claim_commit);
  AddFastMethod(claim, &claim_enter);
  AddFastMethod(claim, &claim_exit);
  claim
      .def_property_readonly("sequence", &PyClaim::sequence,
                             "The sequence number the frame will carry.")
      .def_property_readonly("outstanding", &PyClaim::outstanding,
                             "True until committed or aborted.")
      .def("__len__", &PyClaim::size)
      .def("abort", &PyClaim::abort, "Drop the claim; no frame is sent. BufferError as commit.");

  py::class_<PyFrame> frame(m, "Frame",
                            "A frame read in place by Consumer.read(); release it when done.");
  static PyGetSetDef frame_data = {
      "data", &DataOf<PyFrame>, nullptr,
      "Read-only memoryview of the frame's bytes, in the ring. Released (ValueError on\n"
      "access) once the frame is released.",
      nullptr};
  AddFastGetter(frame, &frame_data);
  static PyMethodDef frame_release = {
      "release", AsCFunction<&FastRelease>(), METH_NOARGS,
      "Give the frame's room back to the producer; idempotent. BufferError if a view of\n"
      ".data other than .data itself is still alive (the frame stays held)."};
  static PyMethodDef frame_enter = {"__enter__", AsCFunction<&FastEnter>(), METH_NOARGS, nullptr};
  static PyMethodDef frame_exit = {
      "__exit__", AsCFunction<&FastExit<PyFrame>>(), METH_VARARGS,
      "Release the frame (if the block raised: unless a view is alive)."};
  AddFastMethod(frame, &frame_release);
  AddFastMethod(frame, &frame_enter);
  AddFastMethod(frame, &frame_exit);
  frame.def_property_readonly("sequence", &PyFrame::sequence, "The frame's sequence number.")
      .def_property_readonly("redelivered", &PyFrame::redelivered,
                             "True if a consumer that died held this frame before (MPMC\n"
                             "redelivery, or an SPSC consumer role taken over): its side\n"
                             "effects may have happened once already.")
      .def_property_readonly("held", &PyFrame::held, "True until released.")
      .def("__len__", &PyFrame::size);

  BindProducer<SpscProducer>(m, "SpscProducer",
                             "The writing end of an SPSC channel (one at a time per channel).");
  BindConsumer<SpscConsumer>(m, "SpscConsumer",
                             "The reading end of an SPSC channel (one at a time per channel).");
  BindProducer<MpmcProducer>(m, "MpmcProducer", "One of the writing ends of an MPMC channel.");
  BindConsumer<MpmcConsumer>(
      m, "MpmcConsumer",
      "One of the competing reading ends of an MPMC channel. A frame held by a consumer that\n"
      "dies is delivered again to another consumer.");
  BindProducer<BroadcastPublisher>(
      m, "BroadcastPublisher",
      "The writing end of a broadcast channel (one at a time per channel; a dead holder's\n"
      "role is taken over at once and the sequence numbers continue). Every subscriber\n"
      "receives every frame it sends.");
  BindConsumer<BroadcastSubscriber>(
      m, "BroadcastSubscriber",
      "One of up to max_endpoints reading ends of a broadcast channel, each with its own\n"
      "cursor: every subscriber reads every frame, in order, from where it started. A gap\n"
      "(lapped under 'overwrite', evicted under 'block') raises shmring.Lapped with the exact\n"
      "count; the next call continues at the oldest frame still held.");
}

}  // namespace shmring::python

PYBIND11_MODULE(_shmring, m) { shmring::python::InitModule(m); }
