"""Python beside the ``shmhub`` command: a Python guest under the command's
host, the command as a guest of a Python host, and the same error lines."""

import os
import signal
import subprocess

import pytest

import shmhub


def run(cli, *args, check=True):
    """Runs the command; its completed process (text)."""
    done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=30)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def held(cli, seg_path):
    """`shmhub create --hold` running as the host of `seg_path`."""
    proc = subprocess.Popen(
        [cli, "create", seg_path, "--slot-size", "4KiB", "--hold"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith(f"created {seg_path}")
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def test_a_python_guest_under_the_commands_held_host(cli, seg_path, held):
    guest = shmhub.Guest.attach(seg_path)
    guest.send(b"hello from python")
    assert held.stdout.readline() == "hello from python\n"
    guest.send(bytes(range(48, 58)) * 300)  # in a slot
    assert held.stdout.readline() == "0123456789" * 300 + "\n"
    run(cli, "send", seg_path, "--as", "host", "--to", str(guest.peer_id), "hello from rust")
    assert guest.recv(timeout=5) == b"hello from rust"
    held.send_signal(signal.SIGTERM)
    assert held.wait(10) == 0
    with pytest.raises(shmhub.HostGone):
        guest.recv(timeout=5)
    guest.detach()
    assert not os.path.exists(seg_path)


def test_a_python_guest_with_the_commands_send_and_recv(cli, seg_path):
    run(cli, "create", seg_path, "--slot-size", "4KiB")
    try:
        with shmhub.Guest.attach(seg_path) as guest:
            peer = str(guest.peer_id)
            run(cli, "send", seg_path, "--as", "host", "--to", peer, "--count", "2", "twice")
            assert [guest.recv(timeout=5), guest.recv(timeout=5)] == [b"twice", b"twice"]
            guest.send(b"back to the command")
            done = run(cli, "recv", seg_path, "--as", "host", "--timeout", "5s", "--json")
            assert f'"from":{peer}' in done.stdout
            assert '"payload_utf8":"back to the command"' in done.stdout
    finally:
        run(cli, "rm", seg_path)


def test_the_command_as_a_guest_of_a_python_host(cli, seg_path):
    with shmhub.Host.create(seg_path, slot_size=4096) as host:
        peer = int(run(cli, "attach", seg_path).stdout)
        [entry] = host.peers()
        assert (entry.peer_id, entry.state, entry.holder) == (peer, "attached", "scripted")
        run(cli, "send", seg_path, "--as", str(peer), "from the command")
        assert host.recv(timeout=5) == (peer, b"from the command")
        host.send(peer, b"to the command")
        host.send(peer, b"x" * 3000)
        done = run(cli, "recv", seg_path, "--as", str(peer), "--count", "2")
        assert done.stdout == "to the command\n" + "x" * 3000 + "\n"
        run(cli, "detach", seg_path, "--peer-id", str(peer))
        assert host.peers() == []


def test_a_held_command_guest_leaves_when_the_python_host_closes(cli, seg_path):
    host = shmhub.Host.create(seg_path)
    guest = subprocess.Popen(
        [cli, "attach", seg_path, "--hold"], stdout=subprocess.PIPE, text=True
    )
    try:
        peer = int(guest.stdout.readline())
        assert [p.holder for p in host.peers()] == ["alive"]
        host.send(peer, b"are you there")
        assert guest.stdout.readline() == "are you there\n"
        host.close()
        assert guest.wait(10) == 0
    finally:
        if guest.poll() is None:
            guest.kill()
        guest.wait()
        guest.stdout.close()


def command_error(done):
    """The command's error line, without `error: `."""
    assert done.returncode == 1, done
    line = done.stderr.splitlines()[0]
    assert line.startswith("error: ")
    return line[len("error: "):]


def test_errors_read_as_the_commands_lines(cli, seg_path, tmp_path):
    missing = "/dev/shm/shmhub-py-never-made"
    with pytest.raises(shmhub.FileError) as caught:
        shmhub.Guest.attach(missing)
    assert str(caught.value) == command_error(run(cli, "attach", missing, check=False))

    not_a_segment = tmp_path / "notes.txt"
    not_a_segment.write_text("not a segment")
    with pytest.raises(shmhub.Corrupt) as caught:
        shmhub.Guest.attach(not_a_segment)
    assert str(caught.value) == command_error(run(cli, "attach", str(not_a_segment), check=False))

    with shmhub.Host.create(seg_path, max_guests=1, slot_size=4096) as host:
        with pytest.raises(shmhub.Busy) as caught:
            host.recv_from(1, timeout=0)
        command = run(cli, "recv", seg_path, "--as", "host", "--from", "1", check=False)
        assert str(caught.value) == command_error(command)

        peer = run(cli, "attach", seg_path).stdout.strip()
        with pytest.raises(shmhub.Busy) as caught:
            shmhub.Guest.attach(seg_path)
        # The command goes on to name who holds each entry.
        assert command_error(run(cli, "attach", seg_path, check=False)).startswith(str(caught.value))

        # A payload over the max payload, from the host here and from the
        # command's guest (the same entry) there.
        big = tmp_path / "big.bin"
        big.write_bytes(bytes(5000))
        with pytest.raises(shmhub.TooLarge) as caught:
            host.send(int(peer), bytes(5000))
        command = run(cli, "send", seg_path, "--as", peer, "--file", str(big), check=False)
        assert str(caught.value) == command_error(command)
        assert str(caught.value) == (
            f"{seg_path}: payload of 5000 bytes exceeds the max payload of 4096 bytes")
        run(cli, "detach", seg_path, "--peer-id", peer)
