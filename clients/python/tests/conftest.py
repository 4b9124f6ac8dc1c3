"""A real Synod node for the whole test session.

The binary is ``SYNOD_BIN`` (default: the debug build in
``~/.cache/synod-target``); the embedding models come from
``SYNOD_TEST_MODELS_DIR`` (default ``~/.cache/synod/models``, where ``make
test`` installs all-MiniLM-L6-v2). The node gets a temp data dir, free ports
and a clean environment: it refuses to start on a ``SYNOD_*`` variable that
is not one of its config keys, so none of ours leak into it.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Iterator, List, Optional

import httpx
import pytest

from synod_client import AsyncClient, Client, RetryPolicy

BIN = Path(os.environ.get("SYNOD_BIN") or Path.home() / ".cache/synod-target/debug/synod")
MODELS_DIR = Path(os.environ.get("SYNOD_TEST_MODELS_DIR") or Path.home() / ".cache/synod/models")
REPO = Path(__file__).resolve().parents[3]
#: A liveness deadline, not a speed assertion.
READY_WITHIN = 60.0
#: Retries fast enough for tests.
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.02, max_backoff=0.2)


#: Every node started, for the log tails of a failed run.
STARTED: List["Node"] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if exitstatus == 0:
        return
    for n in STARTED:
        terminalreporter.section(f"node {n.url} log (last 40 lines; whole log: {n.log})")
        terminalreporter.line(n.log_tail())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One ``synod serve`` process."""

    def __init__(self, root: Path, extra: List[str], scheme: str = "http", ca: Optional[Path] = None) -> None:
        self.root = root
        self.extra = extra
        self.scheme = scheme
        self.ca = ca
        self.data_dir = root / "data"
        self.log = root / "node.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.http = ""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.http}"

    @property
    def password(self) -> str:
        """The first admin's password, as the node wrote it."""
        return (self.data_dir / "admin-password").read_text().strip()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        if not BIN.is_file():
            pytest.exit(f"no synod binary at {BIN}: build it (cargo build) or set SYNOD_BIN", returncode=2)
        STARTED.append(self)
        # A port taken between free_port() and the bind: try new ports.
        for _ in range(3):
            self.http = f"127.0.0.1:{free_port()}"
            args = [
                str(BIN),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--http-addr",
                self.http,
                "--grpc-addr",
                f"127.0.0.1:{free_port()}",
                "--raft-addr",
                f"127.0.0.1:{free_port()}",
                *self.extra,
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("SYNOD_")}
            env["SYNOD_SECURITY_JWT_SECRET"] = secrets.token_hex(32)
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            if self._wait_ready():
                return
        raise RuntimeError(f"the node did not start; log:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        verify: object = ssl.create_default_context(cafile=str(self.ca)) if self.ca else True
        deadline = time.monotonic() + READY_WITHIN
        with httpx.Client(verify=verify, timeout=2.0) as http:  # type: ignore[arg-type]
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    if "address already in use" in self.log_tail().lower():
                        return False
                    raise RuntimeError(f"the node exited with {self.proc.returncode}; log:\n{self.log_tail()}")
                try:
                    if http.get(f"{self.url}/health/ready").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the node was not ready within {READY_WITHIN}s; log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if not (MODELS_DIR / "all-MiniLM-L6-v2").is_dir():
        pytest.exit(
            f"all-MiniLM-L6-v2 is not installed in {MODELS_DIR}: run `make model` or set SYNOD_TEST_MODELS_DIR",
            returncode=2,
        )
    n = Node(tmp_path_factory.mktemp("node"), ["--set", f"plugins.models_dir={MODELS_DIR}"])
    n.start()
    yield n
    n.stop()


@pytest.fixture
def client(node: Node) -> Iterator[Client]:
    with Client(node.url, retry=FAST_RETRY) as c:
        c.login("admin", node.password)
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def aclient(node: Node) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(node.url, retry=FAST_RETRY) as c:
        await c.login("admin", node.password)
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
