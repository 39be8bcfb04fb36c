"""shmring: lock-free shared-memory channels between processes (a binding of the C++ library).

    import shmring
    shmring.create_channel("/ticks")                    # SPSC, 1 MiB ring, mode 0o600
    with shmring.SpscProducer("/ticks") as p:           # in one process
        p.send(b"EURUSD 1.0842")
        p.close()                                       # end of stream
    with shmring.SpscConsumer("/ticks") as c:           # in another
        for message in c:                               # until closed and drained
            print(message)
    shmring.remove_channel("/ticks")

Zero-copy: `with p.claim(n) as claim: claim.data[:] = ...` (commits at exit) and
`with c.read() as frame: use(frame.data, frame.sequence)` (releases at exit).

Broadcast (every subscriber receives every frame):

    shmring.create_channel("/ticks", kind="broadcast", overflow="overwrite")
    with shmring.BroadcastPublisher("/ticks") as p:     # one process
        p.send(b"EURUSD 1.0842")
    with shmring.BroadcastSubscriber("/ticks", start="oldest") as s:  # each of many others
        try:
            print(s.recv(timeout=1))
        except shmring.Lapped as gap:                   # overwritten before it was read
            print("lost", gap.missed, "frames from", gap.sequence)
"""

import sys
import sysconfig

from . import _build_info


def _check_interpreter() -> None:
    here = sysconfig.get_config_var("EXT_SUFFIX")
    version = "%d.%d" % sys.version_info[:2]
    if here != _build_info.EXT_SUFFIX or version != _build_info.VERSION:
        raise ImportError(
            "shmring was built for %s (Python %s, extension suffix %s), but this is %s "
            "(Python %s, extension suffix %s): run it with %s, or rebuild the package for this "
            "interpreter (meson setup -Dpython=%s, or `%s -m pip install .`)"
            % (_build_info.PYTHON, _build_info.VERSION, _build_info.EXT_SUFFIX, sys.executable,
               version, here, _build_info.PYTHON, sys.executable, sys.executable))


_check_interpreter()

from ._errors import (  # noqa: E402
    Abandoned,
    ChannelClosed,
    Corrupted,
    Error,
    InheritedEndpoint,
    Lapped,
    NoFreeEndpoint,
    RoleHeld,
)
from ._shmring import (  # noqa: E402
    _close_inherited_descriptors,
    BroadcastPublisher,
    BroadcastSubscriber,
    Claim,
    Frame,
    Kind,
    MpmcConsumer,
    MpmcProducer,
    OverflowPolicy,
    SpscConsumer,
    SpscProducer,
    StartAt,
    WaitMode,
    channel_counters,
    create_channel,
    remove_channel,
)

# A child of fork() must not keep its parent's endpoints alive (see _shmring.cc).
import os as _os  # noqa: E402

_os.register_at_fork(after_in_child=_close_inherited_descriptors)

__all__ = [
    "Abandoned",
    "BroadcastPublisher",
    "BroadcastSubscriber",
    "ChannelClosed",
    "Claim",
    "Corrupted",
    "Error",
    "Frame",
    "InheritedEndpoint",
    "Kind",
    "Lapped",
    "MpmcConsumer",
    "MpmcProducer",
    "NoFreeEndpoint",
    "OverflowPolicy",
    "RoleHeld",
    "SpscConsumer",
    "SpscProducer",
    "StartAt",
    "WaitMode",
    "channel_counters",
    "create_channel",
    "remove_channel",
]
