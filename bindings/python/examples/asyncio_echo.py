"""An asyncio host and an asyncio guest, in two processes, echoing.

    python bindings/python/examples/asyncio_echo.py

The host creates a segment, starts this script again as its guest
(``--guest PATH PEER_ID``), sends it a few words and awaits each answer
with ``await host.recv_async()``. The guest shows the readiness
descriptor's contract by hand, with ``loop.add_reader``: when the
descriptor is readable it drains it once, then receives with
``try_recv()`` until nothing is left, answering each word in capitals;
``b"bye"`` ends it. Neither side holds a thread while it waits.
"""

import asyncio
import os
import sys

import shmhub

WORDS = [b"hello", b"from", b"asyncio"]


async def host_side():
    path = f"/dev/shm/shmhub-asyncio-echo-{os.getpid()}"
    with shmhub.Host.create(path, max_guests=1) as host:
        peer = host.reserve_peer()  # messages wait in its ring until it attaches
        guest = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--guest", path, str(peer))
        for word in WORDS:
            host.send(peer, word, timeout=5)  # the ring has room: no wait
            sender, answer = await asyncio.wait_for(host.recv_async(), timeout=10)
            print(f"host: sent {word!r}, guest {sender} answered {answer!r}", flush=True)
        host.send(peer, b"bye", timeout=5)
        code = await asyncio.wait_for(guest.wait(), timeout=10)
    print(f"host: guest exited with {code}, segment file removed: {not os.path.exists(path)}",
          flush=True)
    return code


async def guest_side(path, peer_id):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    answered = 0
    with shmhub.Guest.attach(path, peer_id=peer_id) as guest, guest.readiness() as ready:

        def on_readable():
            nonlocal answered
            ended = ready.drain()  # once per wake-up, before receiving
            if ended:  # the host's process ended without a goodbye
                done.set_exception(ConnectionError(f"the host died: {ended}"))
                loop.remove_reader(ready)
                return
            while (word := guest.try_recv()) is not None:
                if word == b"bye":
                    done.set_result(None)
                    loop.remove_reader(ready)
                    return
                guest.send(word.upper(), timeout=5)
                answered += 1

        loop.add_reader(ready, on_readable)
        try:
            await asyncio.wait_for(done, timeout=30)
        finally:
            loop.remove_reader(ready)
    print(f"guest {peer_id}: answered {answered} words, then bye", flush=True)
    return 0


def main(argv):
    if argv[1:2] == ["--guest"]:
        return asyncio.run(guest_side(argv[2], int(argv[3])))
    return asyncio.run(host_side())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
