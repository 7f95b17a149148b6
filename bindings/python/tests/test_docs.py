"""The Python examples of the documentation, run as they are written:
every ``python`` block of the "## Python" section of docs/bindings.md and
of bindings/python/README.md. Each runs as a script in a process of its
own, its segment path swapped for a fresh one."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

EXAMPLE_PATH = "/dev/shm/demo"


def python_blocks(markdown):
    """The bodies of the ```python blocks of `markdown`, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, re.DOTALL | re.MULTILINE)


def section(markdown, heading):
    """`markdown` from the line `heading` to the next heading of its level."""
    level = heading.split(" ")[0]
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find(f"\n{level} ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def run_example(code, seg_path, tmp_path):
    assert EXAMPLE_PATH in code, f"the example no longer uses {EXAMPLE_PATH}"
    script = tmp_path / "example.py"
    script.write_text(code.replace(EXAMPLE_PATH, seg_path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(seg_path)


def blocks_of(doc, heading):
    """The python blocks of `doc` (under `heading`, if given)."""
    markdown = (REPO / doc).read_text()
    if heading:
        markdown = section(markdown, heading)
    return python_blocks(markdown)


DOCS = [("docs/bindings.md", "## Python"), ("bindings/python/README.md", None)]


@pytest.mark.parametrize("doc, heading", DOCS)
def test_the_documentation_has_examples(doc, heading):
    # The Python section has the blocking example, then the two of asyncio.
    assert len(blocks_of(doc, heading)) >= (3 if heading else 2), doc


@pytest.mark.parametrize("doc, heading, index", [
    (doc, heading, index) for doc, heading in DOCS
    for index in range(len(blocks_of(doc, heading)))])
def test_the_documented_example_runs(doc, heading, index, seg_path, tmp_path):
    run_example(blocks_of(doc, heading)[index], seg_path, tmp_path)
