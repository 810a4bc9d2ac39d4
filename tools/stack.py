"""The real local stack for end-to-end tests: livekit-server nodes (alone, or a cluster sharing
Redis), agent workers, the gateway and the redispatcher, as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
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
API_KEY = "devkey"
# not --dev's "secret": a value no log line holds by chance, so tests/test_secrets_in_logs.py
# can look for it in every log of the run
API_SECRET = "e2e-secret-5b0c2f7d9a8e41c6b3d2a1f0e9d8c7b6"
AGENT_TARGET_LOAD = 1.0
# pytest-xdist's name for this test process ("gw0", ...): each process starts its own stack,
# whose server logs must not interleave with another's
RUN = os.environ.get("PYTEST_XDIST_WORKER", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int = 3, below_ephemeral: bool = False) -> int:
    """The first of `size` consecutive free TCP and UDP ports (livekit-server's 7880/7881/7882).
    `below_ephemeral`: from 24000-32000, where no other test's free_port() lands meanwhile
    (for a block a script binds seconds later)."""
    for _ in range(50):
        first = random.randrange(24000, 32000 - size) if below_ephemeral else free_port()
        try:
            with contextlib.ExitStack() as held:
                for n in range(size):
                    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                        s = held.enter_context(socket.socket(socket.AF_INET, kind))
                        s.bind(("127.0.0.1", first + n))
            return first
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


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
    since: int = 0  # where this run's lines begin in the (appended) log
    ports: tuple[int, int, int] = (0, 0, 0)  # signal, rtc TCP, rtc UDP

    def output(self) -> str:
        """This run's log."""
        return self.log.read_bytes()[self.since :].decode(errors="replace")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def node_id(self) -> str:
        """The node's id in a cluster (what CreateRoomRequest.node_id places a room on)."""
        return re.search(r'"nodeID": "(ND_\w+)"', self.output()).group(1)


def start_server(
    name: str = "livekit-server", config: str = "", ports: tuple[int, int, int] | None = None
) -> Server:
    """One livekit-server in dev mode (keys API_KEY/API_SECRET) on free ports (or `ports`:
    signal, rtc TCP, rtc UDP, e.g. a restarted server's); `config` is more YAML, e.g. `redis:`
    to make it a node of a cluster (see start_redis)."""
    # a UDP port number free on TCP is almost surely free on UDP here
    port, tcp, udp = ports or (free_port(), free_port(), free_port())
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / (f"{name}-{RUN}.log" if RUN else f"{name}.log")
    since = log.stat().st_size if log.exists() else 0
    # agents.target_load as scripts/livekit-server.sh ships it (1.0, for tests with
    # BUSY_ANSWER=false: see there), unless the caller's YAML sets its own `agents:` (a YAML key
    # may appear only once)
    agents = (
        "" if "\nagents:" in f"\n{config}" else f"agents:\n  target_load: {AGENT_TARGET_LOAD}\n"
    )
    # logging at info as scripts/livekit-server.sh ships it (debug logs every refresh token)
    logging = "" if "\nlogging:" in f"\n{config}" else "logging:\n  level: info\n"
    config = f"port: {port}\nrtc:\n  tcp_port: {tcp}\n  udp_port: {udp}\n{agents}{logging}{config}"
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
        env={**os.environ, "LIVEKIT_KEYS": f"{API_KEY}: {API_SECRET}"},  # not in argv
        stdout=log.open("a"),  # appended: a restarted server keeps what led to it
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: _listening(port), 30, "livekit-server", log)
    server = Server(port, process, log, since, (port, tcp, udp))
    wait_for(lambda: "starting LiveKit server" in server.output(), 30, "livekit-server", log)
    return server


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@dataclass
class Service:
    """A helper process listening on `port` (Redis, the redispatcher)."""

    port: int
    process: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_redis(name: str = "redis") -> Service:
    """Debian's redis-server on a free port: the shared state of a livekit-server cluster."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"{name}-{port}.log"
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        ["redis-server", *args], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    wait_for(lambda: _listening(port), 30, "redis-server", log)
    return Service(port, process, log)


def start_redispatcher(server: Server, port: int, name: str = "redispatch") -> Service:
    """`python -m agent redispatch` on `port`, calling `server`'s API."""
    log = ARTIFACTS / f"{name}-{port}.log"
    env = {**os.environ, "LIVEKIT_URL": server.url}
    env.update(LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "redispatch", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: _listening(port), 30, "redispatcher", log)
    return Service(port, process, log)


@dataclass
class Worker:
    agent_name: str
    process: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text()

    def rooms(self) -> list[str]:
        """The rooms this worker was given a job in, from its log."""
        # `"room": "x"` in JSON logs, `room=x` or similar in text logs
        return re.findall(r"received job request.*?\broom\W+([\w-]+)", self.output())


def start_worker(
    server: Server,
    extra_env: dict[str, str] | None = None,
    name: str = "worker",
    agent_name: str = "",
    cpu_admission: bool = False,
    timeout: float = 90,
) -> Worker:
    """`python -m agent start` against `server`, configured only through its environment.
    Workers given the same `agent_name` share the calls dispatched to it.

    `cpu_admission`: keep the worker's CPU_PRESSURE_LIMIT (agent/capacity.py). Off otherwise:
    a test's callers, browsers and servers share the worker's cores and make its threads wait,
    which that limit would rightly count as saturation, and turn the test's next call down."""
    agent_name = agent_name or f"e2e-{uuid.uuid4().hex[:6]}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "STT", "LLM", "TTS"))
    }
    env.update(
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        AGENT_NAME=agent_name,
        AGENT_HTTP_PORT=str(free_port()),
        **({} if cpu_admission else {"CPU_PRESSURE_LIMIT": "0"}),
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
    try:
        wait_for(
            lambda: "registered worker" in log.read_text() or process.poll() is not None,
            timeout,
            "agent worker",
            log,
        )
    except TimeoutError:
        stop(process)  # not left behind, registered, after the test gave up on it
        raise
    if process.poll() is not None:
        raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
    return Worker(agent_name, process, log, env)


def stop(*processes: subprocess.Popen, grace: float = 5.0) -> None:
    """TERM them all at once, then KILL whichever still runs `grace` seconds later (a worker
    TERMed with a call still on drains it first, which a finished test need not wait for)."""
    for process in processes:
        process.terminate()
    deadline = time.time() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Gateway:
    """`python -m agent gateway` on its own port; stop() kills it, start() brings it back."""

    def __init__(self, name: str = "gateway") -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.cartesia_key = "local-dev-key"  # the Cartesia API key its clients send

    def start(self) -> None:
        env = {
            **os.environ,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        log = ARTIFACTS / f"{self.name}-{self.port}.log"
        command = [sys.executable, "-m", "agent", "gateway", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--cartesia-key", self.cartesia_key],
            cwd=ROOT,
            env=env,
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 180, "gateway", log)  # model loads: slow on a busy machine

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
        """GET /sessions, with the key it needs (it holds what callers said)."""
        request = urllib.request.Request(
            self.base + "/sessions", headers={"X-API-Key": self.cartesia_key}
        )
        return json.loads(urllib.request.urlopen(request).read())
