# Type stubs for the compiled part of shmring (re-exported by `import shmring`).
import enum
from types import TracebackType
from typing import Dict, Iterator, Optional, Type, TypeVar, Union

from typing_extensions import Buffer as _Buffer  # stubs are not executed; typeshed has it

_Timeout = Optional[float]
_T = TypeVar("_T")

class Kind(enum.Enum):
    SPSC: int
    MPMC: int
    BROADCAST: int

class OverflowPolicy(enum.Enum):
    """Broadcast: what the publisher does when a subscriber has not read the oldest frame."""
    BLOCK: int
    OVERWRITE: int

class StartAt(enum.Enum):
    """Broadcast: where a new subscriber starts reading."""
    LATEST: int
    OLDEST: int

class WaitMode(enum.Enum):
    SPIN: int
    BLOCK: int
    HYBRID: int

def create_channel(
    name: str,
    *,
    kind: Union[Kind, str] = "spsc",
    capacity: int = 1 << 20,
    max_frame: int = 0,
    max_endpoints: int = 64,
    mode: int = 0o600,
    reclaim_stale: bool = False,
    overflow: Union[OverflowPolicy, str] = "block",
    evict_after: Optional[float] = 1.0,
) -> None:
    """Create the channel `name` exclusively (kind 'spsc', 'mpmc' or 'broadcast'; overflow and
    evict_after (seconds, None: never) apply to broadcast channels). Raises ValueError, TypeError,
    FileExistsError, PermissionError."""

def channel_counters(name: str) -> Dict[str, Dict[str, int]]:
    """The channel's statistics by role ('producers', 'consumers'): frames, bytes, wakeups,
    waits, abandoned, takeovers, redelivered, missed, lapped, evicted. Raises as
    remove_channel."""

def remove_channel(name: str) -> None:
    """Unlink the channel `name`. Raises FileNotFoundError, ValueError, PermissionError."""

class _Scoped:
    """A context manager: Claim commits, Frame releases, endpoints detach at exit."""
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Claim(_Scoped):
    """A frame reserved in the ring: fill .data, then commit (or use it as a context manager)."""
    @property
    def data(self) -> memoryview: ...
    @property
    def sequence(self) -> int: ...
    @property
    def outstanding(self) -> bool: ...
    def __len__(self) -> int: ...
    def commit(self, size: Optional[int] = None) -> None: ...
    def abort(self) -> None: ...
    def __enter__(self) -> "Claim": ...

class Frame(_Scoped):
    """A frame read in place: .data is a read-only memoryview into the ring until released."""
    @property
    def data(self) -> memoryview: ...
    @property
    def sequence(self) -> int: ...
    @property
    def redelivered(self) -> bool: ...
    @property
    def held(self) -> bool: ...
    def __len__(self) -> int: ...
    def release(self) -> None: ...
    def __enter__(self) -> "Frame": ...

class _Endpoint(_Scoped):
    def __init__(
        self,
        name: str,
        *,
        wait: Union[WaitMode, str] = "hybrid",
        spin_iterations: int = 20000,
        open_timeout: float = 5.0,
        allow_shared_mode: bool = False,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def max_frame(self) -> int: ...
    @property
    def attached(self) -> bool: ...
    def detach(self) -> None: ...

class _Producer(_Endpoint):
    def send(self, data: "_Buffer", timeout: _Timeout = None) -> None: ...
    def claim(self, size: int, timeout: _Timeout = None) -> Claim: ...
    def close(self) -> None: ...

class _Consumer(_Endpoint):
    def recv(self, timeout: _Timeout = None) -> bytes: ...
    def recv_into(self, buffer: "_Buffer", timeout: _Timeout = None) -> int: ...
    def read(self, timeout: _Timeout = None) -> Frame: ...
    def __iter__(self: _T) -> _T: ...
    def __next__(self) -> bytes: ...

class SpscProducer(_Producer):
    def __enter__(self) -> "SpscProducer": ...
    @property
    def next_sequence(self) -> int: ...

class SpscConsumer(_Consumer):
    def __enter__(self) -> "SpscConsumer": ...
    def __iter__(self) -> Iterator[bytes]: ...
    @property
    def next_sequence(self) -> int: ...

class MpmcProducer(_Producer):
    def __enter__(self) -> "MpmcProducer": ...
    def finish(self) -> None: ...

class MpmcConsumer(_Consumer):
    def __enter__(self) -> "MpmcConsumer": ...
    def __iter__(self) -> Iterator[bytes]: ...

class BroadcastPublisher(_Producer):
    """The one writing end of a broadcast channel: every subscriber receives every frame."""
    def __enter__(self) -> "BroadcastPublisher": ...
    @property
    def next_sequence(self) -> int: ...
    @property
    def overflow(self) -> OverflowPolicy: ...

class BroadcastSubscriber(_Consumer):
    """One of many reading ends of a broadcast channel, each with its own cursor. A gap raises
    shmring.Lapped (.missed, .sequence); the next call continues at the oldest frame held."""
    def __init__(
        self,
        name: str,
        *,
        start: Union[StartAt, str] = "latest",
        wait: Union[WaitMode, str] = "hybrid",
        spin_iterations: int = 20000,
        open_timeout: float = 5.0,
        allow_shared_mode: bool = False,
    ) -> None: ...
    def __enter__(self) -> "BroadcastSubscriber": ...
    def __iter__(self) -> Iterator[bytes]: ...
    @property
    def next_sequence(self) -> int: ...
    @property
    def overflow(self) -> OverflowPolicy: ...
    @property
    def missed(self) -> int: ...
    @property
    def last_missed(self) -> int: ...
