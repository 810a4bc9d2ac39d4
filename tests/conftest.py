import pytest

from tools import stack


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
