"""Shared-memory IPC segments: one host process and up to 255 guest
processes exchanging messages through one memory-mapped file.

A :class:`Host` creates the segment (usually under ``/dev/shm``); guests
attach to it by path (:meth:`Guest.attach`). Payloads are any bytes-like
object, copied once into shared memory; they come out as ``bytes``, or lent
in place as a ``memoryview`` (``recv_view``). Timeouts are in seconds, None
to wait as long as it takes; failures are exceptions of the :class:`Error`
hierarchy.

Event loops: :meth:`Host.readiness` and :meth:`Guest.readiness` give a
file descriptor (:class:`Readiness`) for ``select``, ``selectors`` or
``loop.add_reader``; in asyncio, ``await host.recv_async()`` and ``await
guest.recv_async()`` wait on one without a thread.
"""

import os
from types import TracebackType
from typing import Literal, Optional, Tuple, Type, Union

from typing_extensions import Buffer, Self

__version__: str
INLINE_CAPACITY: int
"""Payloads up to this many bytes travel inside the message descriptor."""

_Path = Union[str, "os.PathLike[str]"]
_Kind = Literal["retry", "busy", "gone", "cut_off", "corrupt", "io", "invalid"]

class Host:
    """The host of a segment: creates the file, sends to each guest and
    receives from all of them, and deletes the file when it is closed,
    garbage-collected, or leaves a ``with`` block.

    One call runs at a time on a host: a call from another thread waits its
    turn, which a waiting call gives up every 20 ms. In a child process
    forked from its creator, a host is closed: calls raise ValueError, and
    closing it there does nothing.
    """

    @staticmethod
    def create(
        path: _Path,
        *,
        max_guests: int = 8,
        ring_capacity: int = 256,
        slot_size: int = 65536,
        slots_per_pool: int = 64,
        max_payload: Optional[int] = None,
        heartbeat_ms: int = 0,
        host_slots_per_guest: int = 0,
        preallocate: bool = False,
        mode: int = 0o600,
    ) -> "Host":
        """Creates a segment file at ``path`` (which must not exist) and
        becomes its host.

        ``max_payload`` defaults to ``slot_size``; ``mode`` is ``0o600`` or
        ``0o660``. Raises :class:`Invalid` for a configuration that cannot
        be laid out, :class:`FileError` if the file exists or cannot be made.
        """
    @property
    def path(self) -> str:
        """The segment file's path, as given to :meth:`create`."""
    @property
    def max_guests(self) -> int:
        """How many guests can attach at once."""
    @property
    def max_payload(self) -> int:
        """The largest payload a message may carry, in bytes."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (the file is gone); True in a forked
        child."""
    def send(self, peer_id: int, data: Buffer, timeout: Optional[float] = None) -> None:
        """Sends ``data`` to guest ``peer_id``, waiting up to ``timeout``
        seconds for room. Raises :class:`Full` (a TimeoutError) when there
        was none, :class:`TooLarge`, :class:`PeerGone`."""
    def recv(self, timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """The next message from any guest, as ``(peer_id, payload)``.
        Raises :class:`TimedOut` (a TimeoutError) when nothing came."""
    def try_recv(self) -> Optional[Tuple[int, bytes]]:
        """The next message from any guest if one is queued, else None."""
    def recv_from(self, peer_id: int, timeout: Optional[float] = None) -> bytes:
        """The next message from guest ``peer_id`` alone. Raises
        :class:`TimedOut`, or :class:`PeerGone` once the guest has left and
        nothing it sent is left to read."""
    def recv_view(self, timeout: Optional[float] = None) -> Tuple[int, memoryview]:
        """The next message from any guest, its payload lent in place as a
        read-only memoryview: use it in a ``with`` block, which frees its
        slot at the end (or once the last view made from it is released)."""
    def readiness(self) -> "Readiness":
        """A new descriptor, readable when a message from any guest is
        queued or a guest's process ended (see :class:`Readiness`)."""
    async def recv_async(self) -> Tuple[int, bytes]:
        """The next message from any guest, awaited in the running asyncio
        loop. Raises :class:`PeerGone` once per guest process that ended
        (when nothing is queued); ValueError once the host is closed."""
    def reserve_peer(self) -> int:
        """Sets an empty entry aside for a guest about to be started (which
        attaches with ``Guest.attach(path, peer_id=...)``); returns its id."""
    def release_peer(self, peer_id: int) -> None:
        """Returns a reserved entry to empty."""
    def evict(self, peer_id: int) -> bool:
        """Cuts guest ``peer_id`` off: every later call to or from it raises
        :class:`CutOff`. Returns whether its entry was freed (at once if its
        process is gone, else by a later :meth:`reclaim_dead`)."""
    def reclaim_dead(self) -> list[int]:
        """Reclaims the entries of guests whose process died; returns their ids."""
    def peers(self) -> list["Peer"]:
        """The entries in use (not empty), in id order."""
    def close(self) -> None:
        """Says goodbye to the guests and deletes the segment file. Closing
        again, or in a forked child, does nothing."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Guest:
    """A guest of a segment: holds one peer entry, sends to the host and
    receives from it; detaches on :meth:`detach`, when garbage-collected, or
    at the end of a ``with`` block. One thread may wait in :meth:`recv`
    while another sends. In a child process forked from the one that
    attached it, a guest is detached: calls raise ValueError, and detaching
    it there does nothing.
    """

    @staticmethod
    def attach(path: _Path, peer_id: Optional[int] = None) -> "Guest":
        """Maps the segment at ``path`` and claims an empty entry, or, with
        ``peer_id``, the entry the host reserved. Raises :class:`Busy` when
        every entry is taken, :class:`FileError`, :class:`Corrupt`."""
    @property
    def path(self) -> str:
        """The segment file's path, as given to :meth:`attach`."""
    @property
    def peer_id(self) -> int:
        """This guest's id, 1 to 255."""
    @property
    def max_payload(self) -> int:
        """The largest payload a message may carry, in bytes."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`detach` has run; True in a forked child."""
    def send(self, data: Buffer, timeout: Optional[float] = None) -> None:
        """Sends ``data`` to the host, waiting up to ``timeout`` seconds for
        room. Raises :class:`Full`, :class:`TooLarge`, :class:`HostGone`."""
    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message from the host. Raises :class:`TimedOut`, or
        :class:`HostGone` once the host has left and nothing it sent is left."""
    def try_recv(self) -> Optional[bytes]:
        """The next message if one is queued, else None."""
    def recv_view(self, timeout: Optional[float] = None) -> memoryview:
        """The next message, its payload lent in place as a read-only
        memoryview (see :meth:`Host.recv_view`)."""
    def readiness(self) -> "Readiness":
        """A new descriptor, readable when a message from the host is
        queued or the host's process ended (see :class:`Readiness`)."""
    async def recv_async(self) -> bytes:
        """The next message from the host, awaited in the running asyncio
        loop. Raises :class:`HostGone` once the host's process ended and
        nothing is queued; ValueError once the guest is detached."""
    def detach(self) -> None:
        """Leaves the segment; the entry is freed. Detaching again, or in a
        forked child, does nothing."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Readiness:
    """A file descriptor that becomes readable when its host or guest has
    a message queued or a process on the other side ended.

    Level-triggered: wait until it is readable, call :meth:`drain` once,
    then ``try_recv()`` until None. It stays readable until drained, and is
    readable again at once after a drain if something is still queued.
    Close it (or use ``with``); closing the host still deletes the file
    while one is open.
    """

    def fileno(self) -> int:
        """The descriptor's number; ValueError once closed."""
    def drain(self) -> list["Ended"]:
        """Re-arms the descriptor; returns the processes on the other side
        that ended since the last drain, each once."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run; True in a forked child."""
    def close(self) -> None:
        """Closes the descriptor (remove it from event loops first)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Ended:
    """A party on the other side that is gone, as :meth:`Readiness.drain`
    reports it: its process ended, or the host said goodbye. Equal to
    another with the same fields; hashable."""

    peer_id: Optional[int]
    """The guest whose process it was; None for the host."""
    pid: int
    goodbye: bool
    """True for a host that said goodbye (its process may still run)."""

class Peer:
    """One guest entry as it was when :meth:`Host.peers` looked."""

    peer_id: int
    state: Literal["reserved", "attached", "goodbye", "quarantined"]
    holder: Literal["alive", "dead", "stale", "scripted", "no process"]
    pid: Optional[int]
    epoch: int
    host_slots_held: int

class Error(Exception):
    """Base class of every error shmhub raises about a segment; ``str()``
    is the line the ``shmhub`` command prints after ``error: ``."""

    kind: _Kind
    path: Optional[str]

class TimedOut(Error, TimeoutError):
    """A wait ran out of time."""

class Full(TimedOut):
    """A send found no room within its timeout; nothing was sent."""

class Gone(Error):
    """The other side has left the segment or died."""

class HostGone(Gone):
    """The host said goodbye or died, and nothing it sent is left to read."""

class PeerGone(Gone):
    """The guest left or died, or this guest's own entry was reclaimed."""

    peer_id: int

class CutOff(Gone):
    """The host cut a guest off: it broke the protocol in its own part of
    the segment, or the host evicted it. The segment and the other guests
    go on."""

    peer_id: int
    reason: Literal["entry", "ring", "descriptor", "evicted"]

class Busy(Error):
    """Someone else has what the call needs (a role, an entry, every entry)."""

class Corrupt(Error):
    """The file is not a usable segment, or breaks the protocol."""

class FileError(Error, OSError):
    """The file itself: a failed system call (``errno``), a symbolic link,
    another user's file, a file changed under the mapping."""

class Invalid(Error, ValueError):
    """The call's own arguments cannot work."""

class TooLarge(Invalid):
    """The payload is longer than the segment's max payload."""

    size: int
    max_payload: int
