"""Fixtures shared by the binding's tests: unique channel names, removed even when a test fails.

Every object a test run creates is named /shmring-test-py-<pid of pytest>-<n>; the session also
sweeps that prefix at the end (a child killed mid-test cannot leave anything behind).
"""

import itertools
import os
import sys

import pytest

# The build-tree package (meson's test() sets PYTHONPATH=build/python); SHMRING_PYTHONPATH wins.
if os.environ.get("SHMRING_PYTHONPATH"):
    sys.path.insert(0, os.environ["SHMRING_PYTHONPATH"])

import shmring  # noqa: E402

PREFIX = "shmring-test-py-%d-" % os.getpid()
_counter = itertools.count()


def unique_name(tag: str = "ch") -> str:
    return "/%s%s-%d" % (PREFIX, tag, next(_counter))


def _remove_quietly(name: str) -> None:
    try:
        shmring.remove_channel(name)
    except FileNotFoundError:
        pass


@pytest.fixture
def names():
    """A factory of unique channel names; every name it gave is removed after the test."""
    given = []

    def make(tag: str = "ch") -> str:
        given.append(unique_name(tag))
        return given[-1]

    yield make
    for name in given:
        _remove_quietly(name)


@pytest.fixture
def name(names):
    return names()


@pytest.fixture
def spsc(name):
    """A fresh 64 KiB SPSC channel; yields its name."""
    shmring.create_channel(name, capacity=1 << 16)
    return name


@pytest.fixture(scope="session", autouse=True)
def sweep_dev_shm():
    yield
    leaked = [f for f in os.listdir("/dev/shm") if f.startswith(PREFIX)]
    for f in leaked:
        _remove_quietly("/" + f)
    assert not leaked, "tests left objects in /dev/shm: %s" % leaked
