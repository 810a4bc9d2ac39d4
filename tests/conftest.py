import os
import re

import pytest

from tools import stack

TIERS = ("unit", "slow", "e2e")  # -m unit is the fast tier (about 30 s)
# the e2e modules that take longest (their calls add up to 1-2 minutes, pytest --durations):
# started first, so that no call is left running alone at the end of a parallel run
LONGEST = {
    f"tests.{name}"
    for name in (
        "test_turns_overlap",
        "test_turns_e2e",
        "test_e2e_cluster",
        "test_e2e_languages",
        "test_faults",
        "test_calls_e2e",
        "test_capacity",
        "test_dev_reload",
    )
}
MODULE_TIER = re.compile(r"^pytestmark = \[?pytest\.mark\.(\w+)", re.MULTILINE)


def pytest_ignore_collect(collection_path, config):
    """`-m <tier>` does not import the other tiers' modules: their imports alone (a browser
    driver, the providers' SDKs) cost the fast tier seconds. A module whose tier cannot be read
    from its text is collected, and deselected by its marks as usual."""
    wanted = config.getoption("markexpr")
    if wanted not in TIERS or not collection_path.name.startswith("test_"):
        return None
    tier = MODULE_TIER.search(collection_path.read_text())
    return True if tier and tier.group(1) in TIERS and tier.group(1) != wanted else None


def pytest_addoption(parser):
    parser.addoption(
        "--alone",
        action="store_true",
        help="run only the tests marked `alone` (scripts/test.sh runs them after the others)",
    )


def pytest_collection_modifyitems(config, items):
    """Every test belongs to exactly one tier, set by its module's `pytestmark`.

    scripts/test.sh runs the suite in several processes (pytest-xdist, a module per process at a
    time), then, with `--alone`, the tests marked `alone` one by one: they load every core on
    purpose, or read how long the machine makes a thread wait, and would skew the tests beside
    them or be skewed by them. Under xdist the modules start longest tier first (e2e, slow,
    unit), so that the short unit modules fill the end instead of a call waiting alone."""
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if len(set(tiers)) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: mark its module with one of {', '.join(TIERS)} "
                f"(pytestmark = pytest.mark.unit), not {sorted(set(tiers)) or 'none'}"
            )
        item.tier = tiers[0]
        if item.tier == "e2e":
            # A real livekit-server, WebRTC and models on two cores: a burst of load from
            # elsewhere can starve one call's audio. One retry (reported as "rerun") tells that
            # from a broken behaviour, which fails both times.
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=5))
    parallel = bool(os.environ.get("PYTEST_XDIST_WORKER") or config.getoption("numprocesses", 0))
    if parallel or config.getoption("alone"):
        keep = [i for i in items if (i.get_closest_marker("alone") is None) == parallel]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    if parallel:  # a stable sort: collection order within a tier and a length
        items.sort(key=lambda i: (TIERS[::-1].index(i.tier), i.module.__name__ not in LONGEST))


@pytest.fixture(scope="session")
def livekit_server():
    server = stack.start_server()
    yield server
    stack.stop(server.process)


@pytest.fixture(scope="session")
def worker(livekit_server):
    """The agent on its embedded local defaults, as `python -m agent start` runs it, logging
    JSON lines as in the image (test_capacity reads which process runs which room from them)."""
    w = stack.start_worker(livekit_server, {"LOG_FORMAT": "json"})
    yield w
    stack.stop(w.process)


@pytest.fixture(scope="session")
def gateway():
    """One local gateway subprocess for the session (its start loads the models): a test
    counts the sessions it added. test_fallback.py, which kills it, starts its own."""
    gw = stack.Gateway("gateway")
    gw.start()
    yield gw
    gw.stop()


class FakeFileSTT:
    """Stands in for `tools.transcribe.make_engine` where a test is about what a tool does with
    transcripts (tables, JSON, plots), not about the engines, which are tested on real speech:
    the engine for descriptor D "hears" `heard[str(D)]` in every file, and `asked` records each
    (descriptor, file, language) it was given."""

    def __init__(self) -> None:
        self.heard: dict[str, str] = {}
        self.asked: list[tuple[str, str, str]] = []

    def make_engine(self, desc, settings, api="cartesia", base_url=""):
        from agent.audio_files import FileTranscript

        fake = self

        class Engine:
            def transcribe(self, audio, language, words, progress):
                fake.asked.append((str(desc), str(audio.path), language))
                progress(audio.duration)
                return FileTranscript(fake.heard[str(desc)], language, audio.duration)

        return Engine()


@pytest.fixture
def fake_file_stt() -> FakeFileSTT:
    return FakeFileSTT()


class FakeLocalSTT:
    """Stands in for a local STT plugin's file path (`transcribe_samples`) where a test is about
    the logic around it (windows, offsets, progress): it hears `text` once in each window it is
    given, as one segment whose words are spread evenly over the window."""

    def __init__(self, text: str, rate: int = 16000) -> None:
        self.text, self.rate = text, rate
        self.windows: list[int] = []  # the length of each window it was given, in samples

    def prewarm(self) -> None:
        pass

    def transcribe_samples(self, samples, word_timestamps: bool = False):
        from agent.plugins import Segment, Word

        self.windows.append(len(samples))
        seconds = len(samples) / self.rate
        words = self.text.split()
        step = seconds / len(words)
        timed = [Word(w, i * step, (i + 1) * step) for i, w in enumerate(words)]
        return [Segment(0.0, seconds, self.text, timed if word_timestamps else [])]


@pytest.fixture
def fake_local_stt(monkeypatch) -> FakeLocalSTT:
    """A FakeLocalSTT that `agent.config.build` returns for every descriptor."""
    from agent import config

    fake = FakeLocalSTT("every word heard")
    monkeypatch.setattr(config, "build", lambda desc, plan=None: fake)
    return fake
