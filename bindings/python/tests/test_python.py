"""Python on both sides: a host and guests, in one process or two."""

import array
import gc
import os
import signal
import threading
import time

import pytest

import shmhub

ECHO_GUEST = """
    import sys, shmhub
    with shmhub.Guest.attach(sys.argv[1]) as guest:
        print(guest.peer_id, flush=True)
        while True:
            try:
                data = guest.recv(timeout=10)
            except shmhub.HostGone:
                break
            guest.send(data[::-1])
"""


def test_a_host_and_a_guest_in_two_processes_exchange_messages(seg_path, child):
    with shmhub.Host.create(seg_path, slot_size=4096) as host:
        echo = child(ECHO_GUEST, seg_path)
        peer = int(echo.line())
        for payload in [b"", b"ping", bytes(range(200)) * 20]:
            host.send(peer, payload, timeout=5)
            assert host.recv(timeout=5) == (peer, payload[::-1])
        host.send(peer, b"abc")
        assert host.recv_from(peer, timeout=5) == b"cba"
    assert echo.wait() == 0, echo.err
    assert not os.path.exists(seg_path)


def test_any_bytes_like_object_is_sent_as_its_bytes(seg_path):
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest:
        words = array.array("I", [1, 2, 3])
        for data in [b"bytes", bytearray(b"bytearray"), memoryview(b"xxview")[2:], words]:
            guest.send(data)
            assert host.recv(timeout=1) == (guest.peer_id, bytes(data))
        host.send(guest.peer_id, memoryview(bytearray(5000)))
        assert guest.recv(timeout=1) == bytes(5000)


def test_the_file_goes_when_the_host_is_closed_collected_or_leaves_a_with(seg_path):
    host = shmhub.Host.create(seg_path)
    assert os.path.exists(seg_path) and not host.closed
    host.close()
    assert not os.path.exists(seg_path) and host.closed
    host.close()
    with pytest.raises(ValueError, match="closed"):
        host.send(1, b"late")

    host = shmhub.Host.create(seg_path)
    del host
    gc.collect()
    assert not os.path.exists(seg_path)

    with shmhub.Host.create(seg_path):
        assert os.path.exists(seg_path)
    assert not os.path.exists(seg_path)


def test_a_guest_detaches_and_its_entry_is_free_again(seg_path):
    with shmhub.Host.create(seg_path, max_guests=1) as host:
        with shmhub.Guest.attach(seg_path) as guest:
            assert [p.state for p in host.peers()] == ["attached"]
            with pytest.raises(shmhub.Busy, match="hub is full"):
                shmhub.Guest.attach(seg_path)
        assert guest.closed and host.peers() == []
        with pytest.raises(ValueError, match="detached"):
            guest.send(b"late")
        again = shmhub.Guest.attach(seg_path)
        assert again.peer_id == 1
        again.detach()
        again.detach()


def test_a_reserved_entry_is_attached_by_id_and_keeps_what_was_sent_ahead(seg_path):
    with shmhub.Host.create(seg_path) as host:
        peer = host.reserve_peer()
        host.send(peer, b"welcome")
        assert [(p.peer_id, p.state) for p in host.peers()] == [(peer, "reserved")]
        with shmhub.Guest.attach(seg_path, peer_id=peer) as guest:
            assert guest.peer_id == peer
            assert guest.recv(timeout=1) == b"welcome"
        other = host.reserve_peer()
        host.release_peer(other)
        with pytest.raises(shmhub.Busy, match="not reserved"):
            shmhub.Guest.attach(seg_path, peer_id=other)


def test_try_recv_returns_none_when_nothing_is_queued(seg_path):
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest:
        assert host.try_recv() is None
        assert guest.try_recv() is None
        guest.send(b"one")
        host.send(guest.peer_id, b"two")
        assert host.try_recv() == (guest.peer_id, b"one")
        assert guest.try_recv() == b"two"


def test_recv_times_out_with_a_timeout_error_after_its_timeout(seg_path):
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest:
        for recv in [lambda t: host.recv(timeout=t), lambda t: guest.recv(timeout=t),
                     lambda t: host.recv_from(guest.peer_id, timeout=t)]:
            start = time.monotonic()
            with pytest.raises(TimeoutError) as caught:
                recv(0.1)
            waited = time.monotonic() - start
            # Not before its time; and it did end (the bound only tells
            # that from waiting as long as it takes).
            assert 0.099 <= waited < 30, waited
            assert isinstance(caught.value, shmhub.TimedOut)
            assert str(caught.value) == f"{seg_path}: timed out"
            assert caught.value.kind == "retry"
            with pytest.raises(shmhub.TimedOut):
                recv(0)


def test_a_send_to_a_full_ring_raises_full_after_its_timeout_and_sends_nothing(seg_path):
    with shmhub.Host.create(seg_path, ring_capacity=2) as host, shmhub.Guest.attach(seg_path) as guest:
        host.send(guest.peer_id, b"1")
        host.send(guest.peer_id, b"2")
        start = time.monotonic()
        with pytest.raises(shmhub.Full) as caught:
            host.send(guest.peer_id, b"3", timeout=0.1)
        assert 0.099 <= time.monotonic() - start < 30
        assert isinstance(caught.value, TimeoutError)
        assert str(caught.value) == f"{seg_path}: host-to-guest ring of peer {guest.peer_id} is full"
        assert [guest.recv(timeout=1), guest.recv(timeout=1), guest.try_recv()] == [b"1", b"2", None]


def test_bad_arguments_raise_a_clear_exception_and_change_nothing(seg_path):
    with shmhub.Host.create(seg_path, slot_size=4096) as host, shmhub.Guest.attach(seg_path) as guest:
        peer = guest.peer_id
        bad_calls = [
            (ValueError, "non-negative", lambda: host.send(peer, b"x", timeout=-1)),
            (ValueError, "non-negative", lambda: guest.recv(timeout=-0.5)),
            (ValueError, "non-negative", lambda: host.recv(timeout=float("nan"))),
            (TypeError, "bytes-like", lambda: host.send(peer, "text")),
            (TypeError, "bytes-like", lambda: guest.send(12)),
            (TypeError, None, lambda: host.send("1", b"x")),
            (TypeError, None, lambda: guest.recv(timeout="soon")),
            (shmhub.TooLarge, "exceeds the max payload of 4096 bytes",
             lambda: host.send(peer, bytes(4097))),
            (shmhub.TooLarge, None, lambda: guest.send(bytearray(5000))),
            (shmhub.Invalid, "peer id 300 is out of range", lambda: host.send(300, b"x")),
            (shmhub.Invalid, "peer id 9 is out of range", lambda: host.recv_from(9)),
            (shmhub.Invalid, "peer id 0 is out of range", lambda: host.send(0, b"x")),
        ]
        for error, words, call in bad_calls:
            with pytest.raises(error, match=words):
                call()
        assert host.try_recv() is None and guest.try_recv() is None
        assert host.peers()[0].host_slots_held == 0
        host.send(peer, b"still fine")
        assert guest.recv(timeout=1) == b"still fine"
        too_large = pytest.raises(shmhub.TooLarge, host.send, peer, bytes(4097)).value
        assert (too_large.size, too_large.max_payload, too_large.kind) == (4097, 4096, "invalid")
        assert isinstance(too_large, ValueError)


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(ring_capacity=3), "invalid ring_capacity = 3"),
        (dict(max_guests=0), "invalid max_guests = 0"),
        (dict(slot_size=-64), "invalid slot_size = -64"),
        (dict(mode=0o644), "invalid mode = 0o644"),
    ],
)
def test_a_bad_configuration_is_refused_and_no_file_is_made(seg_path, options, words):
    with pytest.raises(shmhub.Invalid, match=words):
        shmhub.Host.create(seg_path, **options)
    assert not os.path.exists(seg_path)


def test_file_errors_carry_errno_and_name_the_file(seg_path):
    with pytest.raises(shmhub.FileError) as caught:
        shmhub.Guest.attach(seg_path)
    assert caught.value.errno == 2 and isinstance(caught.value, OSError)
    assert str(caught.value).startswith(f"{seg_path}: No such file")
    with shmhub.Host.create(seg_path):
        with pytest.raises(shmhub.FileError, match="already exists: a shmhub segment in use") as caught:
            shmhub.Host.create(seg_path)
        assert caught.value.errno == 17
    with open(seg_path, "wb") as f:
        f.write(b"not a segment" * 100)
    with pytest.raises(shmhub.Corrupt, match="not a shmhub segment"):
        shmhub.Guest.attach(seg_path)


def test_a_guest_learns_the_host_left_once_it_has_read_what_it_sent(seg_path):
    host = shmhub.Host.create(seg_path)
    guest = shmhub.Guest.attach(seg_path)
    host.send(guest.peer_id, b"last words")
    host.close()
    assert guest.recv(timeout=1) == b"last words"
    with pytest.raises(shmhub.HostGone) as caught:
        guest.recv(timeout=1)
    assert caught.value.kind == "gone" and isinstance(caught.value, shmhub.Gone)
    assert str(caught.value) == f"{seg_path}: the host has left the segment"
    with pytest.raises(shmhub.HostGone):
        guest.send(b"anyone?")


def test_recv_view_lends_the_payload_and_frees_the_slot_after_the_block(seg_path):
    with shmhub.Host.create(seg_path, slot_size=4096, slots_per_pool=2) as host, \
            shmhub.Guest.attach(seg_path) as guest:
        for round_ in range(5):  # more rounds than slots: each one is freed
            host.send(guest.peer_id, bytes([round_]) * 1000)
            with guest.recv_view(timeout=1) as view:
                assert view.readonly and view.format == "B" and len(view) == 1000
                assert view[0] == round_ and bytes(view[-3:]) == bytes([round_]) * 3
            with pytest.raises(ValueError):
                view[0]
        guest.send(b"short")  # inline: lent as a copy
        peer, view = host.recv_view(timeout=1)
        with view:
            assert (peer, bytes(view)) == (guest.peer_id, b"short")
        host.send(guest.peer_id, b"r" * 100)
        with guest.recv_view(timeout=1) as view, pytest.raises(TypeError, match="read-only"):
            view[0] = 1


def test_a_view_kept_past_its_block_keeps_its_slot_until_it_goes(seg_path):
    with shmhub.Host.create(seg_path, slot_size=4096, slots_per_pool=1) as host, \
            shmhub.Guest.attach(seg_path) as guest:
        host.send(guest.peer_id, b"k" * 100)
        with guest.recv_view(timeout=1) as view:
            kept = view[10:20]
        assert bytes(kept) == b"k" * 10
        with pytest.raises(shmhub.Full, match="slot pool of host has no free slot"):
            host.send(guest.peer_id, b"x" * 100, timeout=0.05)
        del kept
        host.send(guest.peer_id, b"x" * 100, timeout=1)
        assert guest.recv(timeout=1) == b"x" * 100


def test_a_view_outlives_its_host_and_guest(seg_path):
    host = shmhub.Host.create(seg_path, slot_size=4096)
    guest = shmhub.Guest.attach(seg_path)
    host.send(guest.peer_id, b"v" * 1000)
    view = guest.recv_view(timeout=1)
    host.close()
    guest.detach()
    assert not os.path.exists(seg_path)
    with view:
        assert bytes(view) == b"v" * 1000


def test_a_guest_receives_in_one_thread_while_another_sends(seg_path):
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest:
        got = []
        receiver = threading.Thread(target=lambda: got.append(guest.recv(timeout=30)))
        receiver.start()
        time.sleep(0.1)
        for i in range(50):
            guest.send(b"%d" % i, timeout=30)
        assert [host.recv(timeout=30)[1] for _ in range(50)] == [b"%d" % i for i in range(50)]
        assert receiver.is_alive() and got == []
        host.send(guest.peer_id, b"done")
        receiver.join(30)
        assert got == [b"done"]


def test_the_gil_is_released_while_waiting(seg_path):
    # The message the host waits for is sent by Python code in another
    # thread: a wait that held the GIL would never let that thread run,
    # and would end in TimedOut.
    with shmhub.Host.create(seg_path) as host, shmhub.Guest.attach(seg_path) as guest:
        started = threading.Event()

        def send_once_the_host_waits():
            started.wait()
            time.sleep(0.1)
            guest.send(b"from another thread")

        sender = threading.Thread(target=send_once_the_host_waits)
        sender.start()
        started.set()
        assert host.recv(timeout=30) == (guest.peer_id, b"from another thread")
        sender.join()


@pytest.mark.parametrize("side", ["host", "guest"])
def test_ctrl_c_interrupts_a_wait(seg_path, child, side):
    code = """
        import sys, time, shmhub
        path, side = sys.argv[1], sys.argv[2]
        if side == "host":
            waiter = shmhub.Host.create(path)
            wait = waiter.recv
        else:
            waiter = shmhub.Guest.attach(path)
            wait = waiter.recv
        try:
            print("waiting", flush=True)
            wait(timeout=30)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
        except TimeoutError:
            print("not interrupted: timed out", flush=True)
    """
    host = None if side == "host" else shmhub.Host.create(seg_path)
    waiter = child(code, seg_path, side)
    assert waiter.line() == "waiting"
    time.sleep(0.3)
    waiter.proc.send_signal(signal.SIGINT)
    assert waiter.line() == "interrupted"
    assert waiter.wait() == 42, waiter.err
    if host:
        host.close()


def test_a_guest_killed_by_sigkill_is_reclaimed(seg_path, child):
    code = """
        import sys, time, shmhub
        guest = shmhub.Guest.attach(sys.argv[1])
        guest.send(b"x" * 1000)  # a slot of its own pool, in flight
        print(guest.peer_id, flush=True)
        time.sleep(60)
    """
    with shmhub.Host.create(seg_path, max_guests=1) as host:
        doomed = child(code, seg_path)
        peer = int(doomed.line())
        [entry] = host.peers()
        assert (entry.peer_id, entry.holder, entry.pid) == (peer, "alive", doomed.proc.pid)
        doomed.proc.kill()
        doomed.wait()
        assert [p.holder for p in host.peers()] == ["dead"]
        with pytest.raises(shmhub.Busy, match="hub is full"):
            shmhub.Guest.attach(seg_path)
        assert host.reclaim_dead() == [peer]
        assert host.peers() == [] and host.reclaim_dead() == []
        with pytest.raises(shmhub.PeerGone) as caught:
            host.recv_from(peer, timeout=0.1)
        assert caught.value.peer_id == peer
        # A send to an entry whose guest left fails as the receive does.
        with pytest.raises(shmhub.PeerGone) as caught:
            host.send(peer, b"to the dead", timeout=0.1)
        assert caught.value.peer_id == peer
        with shmhub.Guest.attach(seg_path) as successor:
            assert successor.peer_id == peer and successor.try_recv() is None
            successor.send(b"fresh")
            assert host.recv(timeout=1) == (peer, b"fresh")


def test_an_evicted_guest_is_cut_off_and_the_others_go_on(seg_path, child, tmp_path):
    code = """
        import os, sys, time, shmhub
        with shmhub.Guest.attach(sys.argv[1]) as guest:
            guest.send(b"before")
            print(guest.peer_id, flush=True)
            try:
                guest.recv(timeout=30)
            except shmhub.CutOff as e:
                print(e.peer_id, e.reason, e.kind, str(e), flush=True)
            try:
                guest.send(b"after")
            except shmhub.CutOff as e:
                print("send:", e.reason, flush=True)
            # Alive until the host has judged it so: the eviction wakes it,
            # and a process that has exited is judged gone.
            deadline = time.monotonic() + 10
            while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
                time.sleep(0.01)
    """
    go = tmp_path / "go"  # made when the child may go; removed with tmp_path
    with shmhub.Host.create(seg_path, max_guests=2) as host, \
            shmhub.Guest.attach(seg_path) as good:
        evicted = child(code, seg_path, go)
        peer = int(evicted.line())
        assert host.recv_from(peer, timeout=5) == b"before"
        assert host.evict(peer) is False  # its process lives: the entry waits
        open(go, "w").close()
        assert evicted.line() == f"{peer} evicted cut_off {seg_path}: peer {peer} is cut off: evicted by the host"
        assert evicted.line() == "send: evicted"
        assert evicted.wait() == 0, evicted.err
        states = {p.peer_id: p.state for p in host.peers()}
        assert states == {good.peer_id: "attached", peer: "quarantined"}
        for call in [lambda: host.send(peer, b"x"), lambda: host.recv_from(peer, timeout=0)]:
            with pytest.raises(shmhub.CutOff) as caught:
                call()
            assert (caught.value.peer_id, caught.value.reason) == (peer, "evicted")
            assert isinstance(caught.value, shmhub.Gone) and caught.value.kind == "cut_off"
        good.send(b"still here")
        assert host.recv(timeout=5) == (good.peer_id, b"still here")
        host.send(good.peer_id, b"so is the host")
        assert good.recv(timeout=5) == b"so is the host"
        assert host.reclaim_dead() == [peer]  # its process is gone now
        with pytest.raises(shmhub.Busy, match="empty"):
            host.evict(peer)


def test_every_error_is_a_shmhub_error_with_a_kind():
    hierarchy = {
        shmhub.TimedOut: (shmhub.Error, TimeoutError),
        shmhub.Full: (shmhub.TimedOut,),
        shmhub.HostGone: (shmhub.Gone,),
        shmhub.PeerGone: (shmhub.Gone,),
        shmhub.CutOff: (shmhub.Gone,),
        shmhub.Gone: (shmhub.Error,),
        shmhub.Busy: (shmhub.Error,),
        shmhub.Corrupt: (shmhub.Error,),
        shmhub.FileError: (shmhub.Error, OSError),
        shmhub.Invalid: (shmhub.Error, ValueError),
        shmhub.TooLarge: (shmhub.Invalid,),
    }
    for cls, bases in hierarchy.items():
        assert all(issubclass(cls, base) for base in bases), cls
        assert cls.__module__ == "shmhub" and cls.__doc__
    assert issubclass(shmhub.Error, Exception)
    for item in [shmhub.Host, shmhub.Guest, shmhub.Peer, shmhub.Host.create, shmhub.Host.send,
                 shmhub.Host.recv, shmhub.Guest.attach, shmhub.Guest.recv_view]:
        assert item.__doc__, item


def test_a_forked_child_leaves_its_parents_host_and_guest_alone(seg_path):
    # A child forked while the parent holds a host, a guest and a lent view
    # has copies of them. The host and guest are closed for the child: a
    # call raises, and neither leaving a `with` block, close(), detach()
    # nor the child's garbage collection says goodbye, detaches or deletes
    # the file; nor does collecting the view there free its slot.
    with shmhub.Host.create(seg_path, slot_size=4096, slots_per_pool=1) as host, \
            shmhub.Guest.attach(seg_path) as guest:
        host.send(guest.peer_id, b"lent" * 100)
        view = guest.recv_view(timeout=1)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report on the pipe, never return into pytest
            status = 1
            try:
                seen = [host.closed, guest.closed]
                for call in [lambda: host.send(guest.peer_id, b"x"), lambda: guest.recv(timeout=1),
                             host.peers, lambda: guest.send(b"x")]:
                    try:
                        call()
                        seen.append("no error")
                    except ValueError as e:
                        seen.append("forked" in str(e))
                host.close()
                guest.detach()
                with host, guest:
                    pass
                view.release()
                del host, guest, view
                gc.collect()
                os.write(write, repr(seen).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read) as child_saw:
            assert (os.waitstatus_to_exitcode(status), child_saw.read()) == (0, repr([True] * 6))
        assert os.path.exists(seg_path) and not host.closed and not guest.closed
        # The host's only slot is still lent to this process's view.
        with pytest.raises(shmhub.Full):
            host.send(guest.peer_id, b"x" * 100, timeout=0)
        with view:
            assert bytes(view) == b"lent" * 100
        assert [(p.peer_id, p.state, p.pid) for p in host.peers()] == [
            (guest.peer_id, "attached", os.getpid())]
        host.send(guest.peer_id, b"still here")
        assert guest.recv(timeout=1) == b"still here"
        guest.send(b"so am I")
        assert host.recv(timeout=1) == (guest.peer_id, b"so am I")
