# Type stubs for the compiled part of shmring (re-exported by `import shmring`).
import enum
from types import TracebackType
from typing import Iterator, Optional, Type, TypeVar, Union

from typing_extensions import Buffer as _Buffer  # stubs are not executed; typeshed has it

_Timeout = Optional[float]
_T = TypeVar("_T")

class Kind(enum.Enum):
    SPSC: int
    MPMC: int

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
) -> None:
    """Create the channel `name` exclusively. Raises ValueError, FileExistsError, PermissionError."""

def remove_channel(name: str) -> None:
    """Unlink the channel `name`. Raises FileNotFoundError, ValueError, PermissionError."""

class Claim:
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
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Frame:
    """A frame read in place: .data is a read-only memoryview into the ring until released."""
    @property
    def data(self) -> memoryview: ...
    @property
    def sequence(self) -> int: ...
    @property
    def held(self) -> bool: ...
    def __len__(self) -> int: ...
    def release(self) -> None: ...
    def __enter__(self) -> "Frame": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class _Endpoint:
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
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

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

class MpmcConsumer(_Consumer):
    def __enter__(self) -> "MpmcConsumer": ...
    def __iter__(self) -> Iterator[bytes]: ...
