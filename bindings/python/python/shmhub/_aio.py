"""The asyncio waiting of ``Host.recv_async`` and ``Guest.recv_async``.

A host or guest makes one :class:`Waiter` at its first ``recv_async``,
with a readiness descriptor of its own, and closes it when it is closed
or detached. A receive follows the descriptor's level-triggered
contract: it receives without waiting (``try_recv``); when nothing is
queued it awaits the descriptor in the event loop (``loop.add_reader``),
drains it, and receives again. A message that comes after the drain makes
the descriptor readable again, so none is missed; and a receive cancelled
while it awaits has taken nothing.
"""

import asyncio


class Waiter:
    """A host's or guest's readiness descriptor, as the tasks of one event
    loop await it.

    Any number of tasks may await it at once: the descriptor is in the
    loop (``add_reader``) while one does; when it turns readable every one
    wakes up, drains it and tries to receive, and those that find nothing
    await again.
    """

    def __init__(self, ready):
        self.ready = ready
        self.fd = ready.fileno()
        # Processes on the other side a drain reported, not yet raised.
        self.ended = []
        self.closed = False
        self._loop = None
        # One future per task awaiting the descriptor.
        self._waiting = []
        self._watched = False

    async def readable(self):
        """Returns once the descriptor was readable and has been drained,
        or once the waiter was closed meanwhile (without a drain).

        Raises ValueError if it is closed already, RuntimeError if tasks
        of another event loop await it.
        """
        if self.closed:
            raise ValueError("the readiness descriptor is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._waiting and not self._loop.is_closed():
                raise RuntimeError("recv_async is awaited in another event loop already")
            # Tasks of a loop closed under them never wake: forgotten.
            self._waiting.clear()
            self._watched = False
            self._loop = loop
        woken = loop.create_future()
        self._waiting.append(woken)
        if not self._watched:
            loop.add_reader(self.fd, self._wake)
            self._watched = True
        try:
            await woken
        finally:
            if woken in self._waiting:
                self._waiting.remove(woken)
            if not self._waiting:
                self._unwatch()
        if not self.closed:
            self.ended.extend(self.ready.drain())

    def _wake(self):
        # The descriptor stays readable until a woken task drains it: out
        # of the loop meanwhile, or the loop would call this again and again.
        self._unwatch()
        for woken in self._waiting:
            if not woken.done():
                woken.set_result(None)

    def _unwatch(self):
        if self._watched:
            self._watched = False
            self._loop.remove_reader(self.fd)

    def close(self):
        """Closes the descriptor; the tasks awaiting it wake up to find
        their host closed or guest detached. Called from any thread: the
        loop's own work is handed to it."""
        loop = self._loop
        if loop is not None and loop.is_running() and not _runs_here(loop):
            try:
                loop.call_soon_threadsafe(self._shut)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._shut()

    def _shut(self):
        if self.closed:
            return
        self.closed = True
        self._unwatch()
        if self._loop is not None and not self._loop.is_closed():
            for woken in self._waiting:
                if not woken.done():
                    woken.set_result(None)
        self.ready.close()


def _runs_here(loop):
    """Whether `loop` is the event loop running in this thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def recv(endpoint, waiter):
    """``endpoint.recv_async()``: the next message of a host (``(peer_id,
    payload)``) or a guest (the payload).

    Once nothing is queued, a process on the other side that a drain found
    ended is raised as the exception of the synchronous receive
    (``PeerGone`` for a guest, ``HostGone`` for the host), once each.
    """
    while True:
        got = endpoint.try_recv()
        if got is not None:
            return got
        if waiter.ended:
            raise endpoint._ended_error(waiter.ended.pop(0))
        await waiter.readable()
