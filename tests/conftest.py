import pytest

from tools import stack

TIERS = ("unit", "slow", "e2e")  # -m unit is the fast tier (under a minute)


def pytest_collection_modifyitems(items):
    """Every test belongs to exactly one tier, set by its module's `pytestmark`."""
    for item in items:
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: mark its module with one of {', '.join(TIERS)} "
                f"(pytestmark = pytest.mark.unit), not {sorted(tiers) or 'none'}"
            )
        if tiers == {"e2e"}:
            # A real livekit-server, WebRTC and models on two cores: a burst of load from
            # elsewhere can starve one call's audio. One retry (reported as "rerun") tells that
            # from a broken behaviour, which fails both times.
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=5))


@pytest.fixture(scope="session")
def livekit_server():
    server = stack.start_server()
    yield server
    stack.stop(server.process)


@pytest.fixture(scope="session")
def worker(livekit_server):
    """The agent on its embedded local defaults, as `python -m agent start` runs it."""
    w = stack.start_worker(livekit_server)
    yield w
    stack.stop(w.process)


@pytest.fixture(scope="module")
def gateway(request):
    """A local gateway subprocess per test module (the fallback tests kill and restart theirs)."""
    gw = stack.Gateway(f"gateway-{request.module.__name__.rsplit('.', 1)[-1]}")
    gw.start()
    yield gw
    gw.stop()
