"""Round trips and a 4 KiB stream through a shmhub segment, against
``multiprocessing.Pipe`` and ``socket.socketpair``, in the same run.

    python bindings/python/bench.py            # about half a minute
    python bindings/python/bench.py --quick    # tiny counts: checks that it runs
    python bindings/python/bench.py --json     # the figures, for scripts

Each transport is timed between this process and one child process
(forked), pinned to two different CPUs when there are two. Every side is
plain Python using each transport the fastest ordinary way: ``send_bytes``
/ ``recv_bytes`` for a Pipe, ``sendall`` / ``recv_into`` with the length
known for a socket pair, ``send`` / ``recv`` (and ``recv_view``, no copy)
for shmhub. Every received payload is a new ``bytes`` (or, for
``recv_view``, read in place), and the receiver of the stream looks at
each one's length.

- round trip: 32 bytes to the child, which sends them back; p50 and mean
  of the per-trip times after a warm-up.
- stream: 4 KiB messages one way, as fast as the receiver takes them;
  the clock stops when the receiver has them all (it answers once).
- Ctrl-C: a child waits in ``Guest.recv()``, this process sends it
  SIGINT at a random point of the wait; the time until the child's
  ``except KeyboardInterrupt`` runs, by the clock both processes share.

Every transport is measured ``--rounds`` times (3), interleaved, so that
a slow spell of a shared machine falls on all of them. The figures that
matter are the ratios between transports measured in the same run.
"""

import argparse
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time

import shmhub

ROUND_TRIP_SIZE = 32
STREAM_SIZE = 4096
DONE = b"done"


# The CPUs this process may use, looked at once, before `pin` narrows them
# (a forked child inherits the narrowed set).
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin(cpu):
    """Runs this process on the `cpu`th CPU alone, when there are two."""
    if len(CPUS) >= 2:
        os.sched_setaffinity(0, {CPUS[cpu]})


# ---- the child's side of each transport ----------------------------------


def shm_child(path, mode, count):
    pin(1)
    with shmhub.Guest.attach(path) as guest:
        if mode == "echo":
            while True:
                try:
                    guest.send(guest.recv())
                except shmhub.HostGone:
                    return
        elif mode == "stream":
            for _ in range(count):
                assert len(guest.recv()) == STREAM_SIZE
        else:  # stream, in place
            for _ in range(count):
                with guest.recv_view() as view:
                    assert len(view) == STREAM_SIZE
        guest.send(DONE)


def pipe_child(conn, parents_end, mode, count):
    pin(1)
    parents_end.close()  # else the parent's close would not end the echo
    if mode == "echo":
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
        except EOFError:
            return
    for _ in range(count):
        assert len(conn.recv_bytes()) == STREAM_SIZE
    conn.send_bytes(DONE)


def recv_exactly(sock, size):
    """`size` bytes from `sock`, as a new bytes; b"" at the end."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return b""
        got += n
    return bytes(buf)


def socket_child(sock, parents_end, mode, count):
    pin(1)
    parents_end.close()  # else the parent's close would not end the echo
    if mode == "echo":
        while True:
            data = recv_exactly(sock, ROUND_TRIP_SIZE)
            if not data:
                return
            sock.sendall(data)
    for _ in range(count):
        assert len(recv_exactly(sock, STREAM_SIZE)) == STREAM_SIZE
    sock.sendall(DONE)


# ---- this side --------------------------------------------------------------


def trips(send, recv, count, warmup):
    """Per-trip times in ns of `count` round trips after `warmup`."""
    payload = bytes(range(ROUND_TRIP_SIZE))
    times = []
    clock = time.perf_counter_ns
    for i in range(warmup + count):
        start = clock()
        send(payload)
        data = recv()
        end = clock()
        if i >= warmup:
            times.append(end - start)
    assert data == payload
    return times


def stream(send, wait_done, count):
    """Seconds to send `count` 4 KiB messages until the receiver has them."""
    payload = bytes(STREAM_SIZE)
    start = time.perf_counter()
    for _ in range(count):
        send(payload)
    wait_done()
    return time.perf_counter() - start


def run_shm(mode, counts):
    path = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                        f"shmhub-bench-{os.getpid()}")
    ctx = multiprocessing.get_context("fork")
    with shmhub.Host.create(path, max_guests=1, slot_size=STREAM_SIZE, slots_per_pool=64) as host:
        count = counts["stream"]
        child = ctx.Process(target=shm_child, args=(path, mode, count))
        child.start()
        while not host.peers():
            time.sleep(0.001)
        if mode == "echo":
            result = trips(lambda d: host.send(1, d), lambda: host.recv_from(1),
                           counts["trips"], counts["warmup"])
        else:
            result = stream(lambda d: host.send(1, d), lambda: host.recv_from(1), count)
        host.close()
        child.join()
    return result


def run_pipe(mode, counts):
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=pipe_child, args=(there, here, mode, counts["stream"]))
    child.start()
    there.close()
    if mode == "echo":
        result = trips(here.send_bytes, here.recv_bytes, counts["trips"], counts["warmup"])
    else:
        result = stream(here.send_bytes, here.recv_bytes, counts["stream"])
    here.close()
    child.join()
    return result


def run_socket(mode, counts):
    ctx = multiprocessing.get_context("fork")
    here, there = socket.socketpair()
    child = ctx.Process(target=socket_child, args=(there, here, mode, counts["stream"]))
    child.start()
    there.close()
    if mode == "echo":
        result = trips(here.sendall, lambda: recv_exactly(here, ROUND_TRIP_SIZE),
                       counts["trips"], counts["warmup"])
    else:
        result = stream(here.sendall, lambda: recv_exactly(here, len(DONE)), counts["stream"])
    here.close()
    child.join()
    return result


def ctrl_c_child(path, ready, report):
    pin(1)
    with shmhub.Guest.attach(path) as guest:
        try:
            os.write(ready, b"r")
            guest.recv()
        except KeyboardInterrupt:
            os.write(report, b"%d" % time.monotonic_ns())


def ctrl_c_latencies(count):
    """Milliseconds from SIGINT to KeyboardInterrupt in a guest's recv(),
    `count` times, each signal at a random point of the wait's slices."""
    ctx = multiprocessing.get_context("fork")
    path = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                        f"shmhub-bench-{os.getpid()}")
    latencies = []
    with shmhub.Host.create(path, max_guests=1, slot_size=64, slots_per_pool=2) as host:
        for _ in range(count):
            ready_r, ready_w = os.pipe()
            report_r, report_w = os.pipe()
            child = ctx.Process(target=ctrl_c_child, args=(path, ready_w, report_w))
            child.start()
            os.close(ready_w)
            os.close(report_w)
            os.read(ready_r, 1)
            time.sleep(0.05 + random.random() * 0.05)  # inside the wait, at any phase
            sent = time.monotonic_ns()
            os.kill(child.pid, signal.SIGINT)
            caught = int(os.read(report_r, 32))
            child.join()
            os.close(ready_r)
            os.close(report_r)
            latencies.append((caught - sent) / 1e6)
            host.reclaim_dead()  # the entry of a child that did not detach
    return latencies


def measure(counts, rounds):
    """Every transport `rounds` times, interleaved, so that a slow spell
    of the machine falls on all of them: the round trips' times pooled,
    the stream's median rate."""
    pin(0)
    trips_of = {}
    streams_of = {}
    for _ in range(rounds):
        for name, run in [("shmhub", run_shm), ("Pipe", run_pipe), ("socketpair", run_socket)]:
            trips_of.setdefault(name, []).extend(run("echo", counts))
        for name, run, mode in [("shmhub", run_shm, "stream"),
                                ("shmhub (recv_view)", run_shm, "view"),
                                ("Pipe", run_pipe, "stream"), ("socketpair", run_socket, "stream")]:
            streams_of.setdefault(name, []).append(counts["stream"] / run(mode, counts))
    figures = {}
    for name, rates in streams_of.items():
        figures[name] = {}
        if name in trips_of:
            times = trips_of[name]
            figures[name]["round_trip_p50_us"] = statistics.median(times) / 1000
            figures[name]["round_trip_mean_us"] = statistics.fmean(times) / 1000
        rate = statistics.median(rates)
        figures[name]["stream_msgs_per_s"] = rate
        figures[name]["stream_mib_per_s"] = rate * STREAM_SIZE / 2**20
    latencies = ctrl_c_latencies(counts["ctrl_c"])
    figures["shmhub"]["ctrl_c_p50_ms"] = statistics.median(latencies)
    figures["shmhub"]["ctrl_c_max_ms"] = max(latencies)
    return figures


def ratios(figures):
    """How many times faster shmhub is than each other transport."""
    shm = figures["shmhub"]
    out = {}
    for other in ["Pipe", "socketpair"]:
        them = figures[other]
        out[other] = {
            "round_trip_p50": them["round_trip_p50_us"] / shm["round_trip_p50_us"],
            "stream": shm["stream_msgs_per_s"] / them["stream_msgs_per_s"],
        }
    return out


def report(figures, times_faster):
    print(f"{'transport':<20} {'round trip p50':>15} {'mean':>10} {'4 KiB stream':>14} {'':>10}")
    for name, f in figures.items():
        trip = f"{f['round_trip_p50_us']:.1f} us" if "round_trip_p50_us" in f else "-"
        mean = f"{f['round_trip_mean_us']:.1f} us" if "round_trip_mean_us" in f else "-"
        print(f"{name:<20} {trip:>15} {mean:>10} {f['stream_msgs_per_s'] / 1000:>9.0f} k/s "
              f"{f['stream_mib_per_s']:>6.0f} MiB/s")
    print()
    goals = {"round_trip_p50": 5.0, "stream": 3.0}
    for other, r in times_faster.items():
        for what, ratio in r.items():
            goal = goals[what] if other == "Pipe" else None
            verdict = "" if goal is None else (f"  goal >= {goal:.0f}x: "
                                               + ("met" if ratio >= goal else "NOT met"))
            print(f"shmhub vs {other:<10} {what:<15} {ratio:5.1f}x faster{verdict}")
    shm = figures["shmhub"]
    print(f"Ctrl-C to KeyboardInterrupt in recv(): p50 {shm['ctrl_c_p50_ms']:.1f} ms, "
          f"max {shm['ctrl_c_max_ms']:.1f} ms  goal <= 100 ms: "
          + ("met" if shm["ctrl_c_max_ms"] <= 100 else "NOT met"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that it runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rounds", type=int, help="times each transport is measured (default 3)")
    args = parser.parse_args()
    if args.quick:
        counts = {"trips": 200, "warmup": 20, "stream": 500, "ctrl_c": 3}
    else:
        counts = {"trips": 20_000, "warmup": 2_000, "stream": 100_000, "ctrl_c": 30}
    rounds = args.rounds or (1 if args.quick else 3)
    figures = measure(counts, rounds)
    times_faster = ratios(figures)
    if args.json:
        json.dump({"figures": figures, "times_faster": times_faster}, sys.stdout, indent=1)
        print()
    else:
        report(figures, times_faster)


if __name__ == "__main__":
    main()
