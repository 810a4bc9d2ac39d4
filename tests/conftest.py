import pytest

from tests import stack


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
