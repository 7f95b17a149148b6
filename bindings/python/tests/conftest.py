"""Fixtures of the shmhub binding tests: fresh segment paths, the
``shmhub`` command, and Python child processes to act as the other side."""

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def seg_path():
    """A path under /dev/shm nobody uses, removed after the test."""
    path = Path("/dev/shm") / f"shmhub-py-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield str(path)
    if path.exists():
        path.unlink()


@pytest.fixture(scope="session")
def cli():
    """The ``shmhub`` command: $SHMHUB_BIN, or the repository's debug build."""
    binary = Path(os.environ.get("SHMHUB_BIN", REPO / "target" / "debug" / "shmhub"))
    if not binary.is_file():
        pytest.fail(f"{binary} not found: run `cargo build --locked` or set SHMHUB_BIN")
    return str(binary)


class Child:
    """A Python process running ``code``, talking by lines on its stdout."""

    def __init__(self, code, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self):
        """The next line it prints, without the newline."""
        line = self.proc.stdout.readline()
        assert line, f"child exited early: {self.proc.stderr.read()}"
        return line.rstrip("\n")

    def wait(self, timeout=10):
        """Its exit code, once it exits; its stderr in `self.err`."""
        code = self.proc.wait(timeout)
        self.err = self.proc.stderr.read()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def child():
    """Starts Python children; kills the ones left running at the end."""
    started = []

    def start(code, *args):
        started.append(Child(code, *args))
        return started[-1]

    yield start
    for c in started:
        c.kill()
        c.proc.stdout.close()
        c.proc.stderr.close()
