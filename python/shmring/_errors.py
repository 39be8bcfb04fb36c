"""The shmring exception hierarchy (the standard exceptions cover the rest).

Setup and data-path errors map to the standard exceptions where one fits:
FileNotFoundError (no such channel), FileExistsError (create of an existing name),
PermissionError, ValueError (bad name, geometry, frame larger than max_frame, buffer too small,
detached endpoint), TypeError (not a buffer, wrong argument type), TimeoutError (the timeout
passed), BufferError (a frame/claim given back while a view of it is alive). Everything else is
a shmring.Error.
"""

from typing import Optional


class Error(Exception):
    """Base class of the errors specific to shmring."""


class ChannelClosed(Error, EOFError):
    """End of stream: a consumer found the channel closed and drained, or a producer sent on a
    closed channel. Iterating over a consumer stops instead of raising it."""


class Corrupted(Error):
    """The segment holds something no correct peer writes (or is truncated); nothing was read or
    written."""


class RoleHeld(Error):
    """SPSC: the producer or consumer role is held by a live process, whose pid is `.pid`."""

    def __init__(self, message: str, pid: Optional[int] = None) -> None:
        super().__init__(message)
        self.pid = pid


class NoFreeEndpoint(Error):
    """MPMC: max_endpoints live endpoints are already attached."""


class Abandoned(Error):
    """MPMC producer: the channel took this producer for dead and skipped its claim."""


class InheritedEndpoint(Error):
    """The endpoint was attached by the parent before fork(); a child must attach its own."""


class Lapped(Error):
    """Broadcast subscriber: frames it had not read were lost — overwritten ('overwrite' policy)
    or skipped because it was evicted ('block' policy, stuck longer than evict_after). `.missed`
    is exactly how many, `.sequence` the first of them (sequence numbers .sequence ..
    .sequence + .missed - 1). The subscriber stays attached: its next receive returns the oldest
    frame still held. Raised by release() (or the end of a `with sub.read()` block) when the
    frame held in place was overwritten meanwhile: discard what was read from it."""

    def __init__(self, message: str, missed: int = 0, sequence: Optional[int] = None) -> None:
        super().__init__(message)
        self.missed = missed
        self.sequence = sequence


__all__ = [
    "Error",
    "ChannelClosed",
    "Corrupted",
    "RoleHeld",
    "NoFreeEndpoint",
    "Abandoned",
    "InheritedEndpoint",
    "Lapped",
]

for _name in __all__:  # shown as shmring.RoleHeld etc. in tracebacks
    globals()[_name].__module__ = "shmring"
del _name
