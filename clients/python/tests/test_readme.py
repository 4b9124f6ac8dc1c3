"""Every ```python block of the client's README and of the top-level
README's "## Python client" section runs as written against the test node.

The examples read the node's address and the admin password from
``SYNOD_ADDR`` and ``SYNOD_PASSWORD``; each runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from conftest import REPO, Node

HERE = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def section(text: str, title: str) -> str:
    """The text under the heading ``title`` up to the next heading of its level."""
    level = title.split(" ", 1)[0]
    m = re.search(rf"^{re.escape(title)}\s*$(.*?)(?=^{level} |\Z)", text, re.M | re.S)
    return m.group(1) if m else ""


def examples() -> List[Tuple[str, str]]:
    out = []
    sources = [
        ("clients/python/README.md", (HERE / "README.md").read_text()),
        ("README.md#python-client", section((REPO / "README.md").read_text(), "## Python client")),
    ]
    for name, text in sources:
        for i, code in enumerate(BLOCK.findall(text)):
            out.append((f"{name}[{i}]", code))
    return out


EXAMPLES = examples()


def test_the_readmes_have_examples() -> None:
    names = [n for n, _ in EXAMPLES]
    assert any(n.startswith("clients/python/README.md") for n in names)
    assert any(n.startswith("README.md#python-client") for n in names)


@pytest.mark.parametrize("name,code", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_runs(node: Node, tmp_path: Path, name: str, code: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNOD_")}
    env.update(SYNOD_ADDR=node.url, SYNOD_PASSWORD=node.password)
    script = tmp_path / "example.py"
    script.write_text(code)
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"{name} failed:\n{code}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
