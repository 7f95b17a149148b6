"""The readiness descriptor from Python (``Host.readiness``,
``Guest.readiness``: level-triggered, drained once per wake-up, closed by
close, ``with`` and garbage collection) and asyncio on it (``recv_async``):
the example run as a reader runs it, an asyncio host serving three guest
processes from one thread, and processes killed while the other side
awaits. Deadlines only bound a hang; measured times are printed."""

import asyncio
import collections
import gc
import os
import select
import subprocess
import sys
import time

import pytest

import shmhub

from conftest import REPO

EXAMPLE = REPO / "bindings/python/examples/asyncio_echo.py"


def readable(ready, timeout):
    """Whether `select` finds `ready` readable within `timeout` seconds."""
    return select.select([ready], [], [], timeout)[0] == [ready]


def threads():
    """The threads of this process, Python's and the library's alike."""
    return len(os.listdir("/proc/self/task"))


def fd_target(fd):
    """What descriptor `fd` of this process is, or None if it is closed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return None


def test_the_asyncio_echo_example_runs_and_says_what_it_did():
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                          timeout=60)
    print(f"the example ran in {time.monotonic() - start:.2f} s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "host: sent b'hello', guest 1 answered b'HELLO'",
        "host: sent b'from', guest 1 answered b'FROM'",
        "host: sent b'asyncio', guest 1 answered b'ASYNCIO'",
        "guest 1: answered 3 words, then bye",
        "host: guest exited with 0, segment file removed: True",
    ]


# shm[verify shm.ready.fd]
def test_the_descriptor_is_level_triggered_and_a_drain_rearms_it(seg_path):
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest, \
            host.readiness() as ready:
        peer = guest.peer_id
        assert not readable(ready, 0.05)
        guest.send(b"one")
        guest.send(b"two")
        assert readable(ready, 10)
        # Level-triggered: it stays readable until drained, receives or not.
        assert readable(ready, 0)
        assert host.try_recv() == (peer, b"one")
        assert readable(ready, 0)
        assert ready.drain() == []  # no process ended
        # "two" is still queued: readable again at once after the drain.
        assert readable(ready, 10)
        assert ready.drain() == []
        assert host.try_recv() == (peer, b"two")
        assert host.try_recv() is None
        # A drain with nothing queued leaves it quiet until the next message.
        assert ready.drain() == []
        assert not readable(ready, 0.05)
        guest.send(b"three")
        assert readable(ready, 10)
        ready.drain()
        assert host.try_recv() == (peer, b"three")

        # The guest's side works the same way.
        with guest.readiness() as theirs:
            assert not readable(theirs, 0.05)
            host.send(peer, b"down")
            assert readable(theirs, 10) and theirs.drain() == []
            assert guest.try_recv() == b"down"


# shm[verify shm.ready.death]
def test_a_guest_process_that_ends_makes_the_descriptor_readable_and_is_drained_once(
        seg_path, child):
    code = """
        import sys, time, shmhub
        guest = shmhub.Guest.attach(sys.argv[1])
        print(guest.peer_id, flush=True)
        time.sleep(60)
    """
    with shmhub.Host.create(seg_path) as host:
        doomed = child(code, seg_path)
        peer = int(doomed.line())
        # Made once the guest is there: its process is watched from the start.
        ready = host.readiness()
        assert not readable(ready, 0.05)
        start = time.monotonic()
        doomed.proc.kill()
        assert readable(ready, 10)
        print(f"readable {1000 * (time.monotonic() - start):.1f} ms after SIGKILL")
        [ended] = ready.drain()
        assert (ended.peer_id, ended.pid) == (peer, doomed.proc.pid)
        assert repr(ended) == f"Ended(peer_id={peer}, pid={doomed.proc.pid}, goodbye=False)"
        # Told once: the next drain has nothing, and it stays quiet.
        assert ready.drain() == []
        assert not readable(ready, 0.05)
        ready.close()
        doomed.wait()
        assert host.reclaim_dead() == [peer]


def test_a_descriptor_is_closed_by_close_with_and_gc_and_keeps_no_file(seg_path):
    before = threads()
    host = shmhub.Host.create(seg_path, max_guests=1)
    ready = host.readiness()
    fd = ready.fileno()
    assert fd_target(fd) == "anon_inode:[eventpoll]"
    assert threads() == before + 1  # the thread that watches for it
    ready.close()
    assert fd_target(fd) is None and ready.closed and threads() == before
    for call in [ready.fileno, ready.drain]:
        with pytest.raises(ValueError, match="readiness descriptor is closed"):
            call()
    ready.close()  # again: nothing
    assert "closed" in repr(ready)

    with host.readiness() as ready:
        fd = ready.fileno()
        assert threads() == before + 1
    assert fd_target(fd) is None and threads() == before

    ready = host.readiness()
    fd = ready.fileno()
    del ready
    gc.collect()
    assert fd_target(fd) is None and threads() == before

    # Open descriptors keep neither the guest's entry nor the host's file.
    guest = shmhub.Guest.attach(seg_path)
    guests_ready, hosts_ready = guest.readiness(), host.readiness()
    guest.detach()
    with shmhub.Guest.attach(seg_path) as successor:  # the only entry is free
        assert successor.peer_id == guest.peer_id
    host.close()
    assert not os.path.exists(seg_path)
    assert not hosts_ready.closed and hosts_ready.drain() == []
    with pytest.raises(ValueError, match="closed"):
        host.readiness()
    with pytest.raises(ValueError, match="detached"):
        guest.readiness()
    guests_ready.close()
    hosts_ready.close()
    assert threads() == before


def test_a_forked_child_has_its_parents_descriptor_closed(seg_path):
    # In a forked child the thread that watches for the descriptor does not
    # exist: the descriptor acts as closed there, and closing or collecting
    # it must neither wait for that thread nor touch the parent's.
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest, \
            host.readiness() as ready:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report on the pipe, never return into pytest
            status = 1
            try:
                seen = [ready.closed]
                for call in [ready.fileno, ready.drain, host.readiness]:
                    try:
                        call()
                        seen.append("no error")
                    except ValueError as e:
                        seen.append("forked" in str(e))
                ready.close()
                del ready
                gc.collect()
                os.write(write, repr(seen).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read) as child_saw:
            assert (os.waitstatus_to_exitcode(status), child_saw.read()) == (0, repr([True] * 4))
        guest.send(b"still watched")
        assert readable(ready, 10) and ready.drain() == []
        assert host.try_recv() == (guest.peer_id, b"still watched")


# shm[verify shm.ready.fd]
def test_an_asyncio_host_serves_three_guest_processes_from_one_thread(seg_path, child):
    code = """
        import sys, shmhub
        with shmhub.Guest.attach(sys.argv[1]) as guest:
            print(guest.peer_id, flush=True)
            for i in range(int(sys.argv[2])):
                guest.send(b"%d:%d" % (guest.peer_id, i), timeout=10)
                answer = guest.recv(timeout=10)
                assert answer == b"%d:%d!" % (guest.peer_id, i), answer
            print("done", flush=True)
    """
    each = 20
    before = threads()
    with shmhub.Host.create(seg_path, max_guests=3) as host:
        guests = [child(code, seg_path, each) for _ in range(3)]
        peers = sorted(int(g.line()) for g in guests)
        assert peers == [1, 2, 3]

        async def serve():
            served = collections.Counter()
            most_threads = 0
            while sum(served.values()) < 3 * each:
                peer, message = await host.recv_async()
                sender, _, n = message.partition(b":")
                # One guest's messages come in the order it sent them.
                assert (int(sender), int(n)) == (peer, served[peer])
                served[peer] += 1
                host.send(peer, message + b"!", timeout=5)
                most_threads = max(most_threads, threads())
            return served, most_threads

        start = time.monotonic()
        served, most_threads = asyncio.run(asyncio.wait_for(serve(), timeout=30))
        print(f"served {3 * each} round trips in {time.monotonic() - start:.3f} s")
        assert served == {1: each, 2: each, 3: each}
        # One thread watches the host's descriptor, whatever the guests.
        assert most_threads == before + 1
        for g in guests:
            assert g.line() == "done"
            assert g.wait() == 0, g.err
    # Closing the host closed recv_async's descriptor.
    assert threads() == before


def test_tasks_awaiting_one_host_each_get_a_message_and_a_cancelled_one_loses_none(seg_path):
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest:

        async def scenario():
            receiving = [asyncio.ensure_future(host.recv_async()) for _ in range(3)]
            await asyncio.sleep(0.01)
            assert not any(task.done() for task in receiving)
            for word in [b"a", b"b", b"c"]:
                guest.send(word)
            got = await asyncio.wait_for(asyncio.gather(*receiving), timeout=10)
            assert sorted(got) == [(guest.peer_id, w) for w in [b"a", b"b", b"c"]]

            cancelled = asyncio.ensure_future(host.recv_async())
            await asyncio.sleep(0.01)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            guest.send(b"after the cancel")
            assert await asyncio.wait_for(host.recv_async(), timeout=10) == (
                guest.peer_id, b"after the cancel")

            host.send(guest.peer_id, b"down")
            assert await asyncio.wait_for(guest.recv_async(), timeout=10) == b"down"

            # Closing the host wakes a task awaiting it.
            waiting = asyncio.ensure_future(host.recv_async())
            await asyncio.sleep(0.01)
            host.close()
            with pytest.raises(ValueError, match="the host is closed"):
                await asyncio.wait_for(waiting, timeout=10)

        asyncio.run(scenario())
        assert not os.path.exists(seg_path)


# shm[verify shm.ready.death]
def test_a_guest_killed_while_an_asyncio_host_awaits_raises_peer_gone(seg_path, child):
    code = """
        import sys, time, shmhub
        guest = shmhub.Guest.attach(sys.argv[1])
        guest.send(b"last words")
        print(guest.peer_id, flush=True)
        time.sleep(60)
    """
    with shmhub.Host.create(seg_path) as host:
        doomed = child(code, seg_path)
        peer = int(doomed.line())

        async def await_the_death():
            # What the guest sent before dying is received first.
            assert await asyncio.wait_for(host.recv_async(), timeout=10) == (peer, b"last words")
            receiving = asyncio.ensure_future(host.recv_async())
            await asyncio.sleep(0.01)
            assert not receiving.done()
            start = time.monotonic()
            doomed.proc.kill()
            with pytest.raises(shmhub.PeerGone) as caught:
                await asyncio.wait_for(receiving, timeout=10)
            return caught.value, time.monotonic() - start

        error, elapsed = asyncio.run(await_the_death())
        print(f"PeerGone raised {1000 * elapsed:.1f} ms after SIGKILL")
        assert (error.peer_id, error.pid, error.kind) == (peer, doomed.proc.pid, "gone")
        assert str(error) == (f"{seg_path}: peer {peer} died (pid {doomed.proc.pid}) "
                              "without detaching")
        doomed.wait()
        assert host.reclaim_dead() == [peer]


# shm[verify shm.ready.death]
def test_a_host_killed_while_an_asyncio_guest_awaits_raises_host_gone(seg_path, child):
    code = """
        import sys, time, shmhub
        host = shmhub.Host.create(sys.argv[1])
        print("created", flush=True)
        time.sleep(60)
    """
    doomed = child(code, seg_path)
    assert doomed.line() == "created"
    with shmhub.Guest.attach(seg_path) as guest:

        async def await_the_death():
            receiving = asyncio.ensure_future(guest.recv_async())
            await asyncio.sleep(0.01)
            assert not receiving.done()
            start = time.monotonic()
            doomed.proc.kill()
            with pytest.raises(shmhub.HostGone) as caught:
                await asyncio.wait_for(receiving, timeout=10)
            return caught.value, time.monotonic() - start

        error, elapsed = asyncio.run(await_the_death())
        print(f"HostGone raised {1000 * elapsed:.1f} ms after SIGKILL")
        assert error.kind == "gone"
        assert str(error) == (f"{seg_path}: host process {doomed.proc.pid} died without "
                              "saying goodbye")
    doomed.wait()


def test_a_host_that_closes_while_an_asyncio_guest_awaits_raises_host_gone(seg_path, child):
    code = """
        import sys, time, shmhub
        host = shmhub.Host.create(sys.argv[1])
        print("created", flush=True)
        while not host.peers():  # until the guest is there
            time.sleep(0.01)
        time.sleep(0.1)  # and awaits
        host.close()
        time.sleep(60)  # alive: only the goodbye can tell the guest
    """
    leaving = child(code, seg_path)
    assert leaving.line() == "created"
    with shmhub.Guest.attach(seg_path) as guest:
        with pytest.raises(shmhub.HostGone, match="the host has left the segment"):
            asyncio.run(asyncio.wait_for(guest.recv_async(), timeout=2))
