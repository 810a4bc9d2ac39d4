"""The real local stack for end-to-end tests: a livekit-server and agent workers as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
API_KEY, API_SECRET = "devkey", "secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout}s\n{tail}")


def livekit_binary() -> str:
    found = shutil.which("livekit-server") or str(ROOT / ".tools/bin/livekit-server")
    if not Path(found).exists():
        raise RuntimeError("livekit-server is not installed: run scripts/setup.sh")
    return found


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_server(name: str = "livekit-server") -> Server:
    port, tcp = free_port(), free_port()
    udp = free_port()  # a UDP port number free on TCP is almost surely free on UDP here
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"{name}.log"
    config = f"port: {port}\nrtc:\n  tcp_port: {tcp}\n  udp_port: {udp}\n"
    process = subprocess.Popen(
        [
            livekit_binary(),
            "--dev",
            "--bind",
            "127.0.0.1",
            "--node-ip",
            "127.0.0.1",
            "--config-body",
            config,
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(up, 30, "livekit-server", log)
    return Server(port, process, log)


@dataclass
class Worker:
    agent_name: str
    process: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text()


def start_worker(
    server: Server, extra_env: dict[str, str] | None = None, name: str = "worker"
) -> Worker:
    """`python -m agent start` against `server`, configured only through its environment."""
    agent_name = f"e2e-{uuid.uuid4().hex[:6]}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "STT", "LLM", "TTS"))
    }
    env.update(
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        AGENT_NAME=agent_name,
        AGENT_HTTP_PORT=str(free_port()),
        # the tests share 2 cores with a browser and the server: never turn the test call away
        LOAD_THRESHOLD="inf",
        **(extra_env or {}),
    )
    log = ARTIFACTS / f"{name}-{agent_name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "start"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_for(
        lambda: "registered worker" in log.read_text() or process.poll() is not None,
        90,
        "agent worker",
        log,
    )
    if process.poll() is not None:
        raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
    return Worker(agent_name, process, log, env)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


class Gateway:
    """`python -m agent gateway` on its own port; stop() kills it, start() brings it back."""

    def __init__(self, name: str = "gateway") -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        log = ARTIFACTS / f"{self.name}-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "gateway", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 60, "gateway", log)

    def _up(self) -> bool:
        try:
            urllib.request.urlopen(self.base + "/", timeout=0.5).read()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait()

    def sessions(self) -> list[dict]:
        return json.loads(urllib.request.urlopen(self.base + "/sessions").read())
