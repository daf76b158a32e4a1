"""Shared fixtures: a clean environment, the simulator on a real loopback socket, fast clients."""

from __future__ import annotations

import asyncio
import time
import warnings

import httpx
import pytest

from qwen_widgets import AsyncQwenClient, DemoModeWarning, RequestBudget, PollSchedule, QwenClient, RetryPolicy
from qwen_widgets.simulator import Simulator, serve

TIME_SCALE = 0.01  # a 20 s task takes 0.2 s
TEST_KEY = "sk-test-0123456789abcdef"


# Session-wide things that are costly to start, by the fixture that starts them: with workers
# (`pytest -n 4`), the tests using one share a pytest-xdist group, so it starts once, in one
# worker (the groups' tests run while the other workers take the rest).
_SHARED = {"lab": "jupyterlab", "executed": "notebooks"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, group in _SHARED.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No test sees the developer's key, base URL or demo switch."""
    for name in ("APIMART_API_KEY", "APIMART_BASE_URL", "QWEN_WIDGETS_DEMO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QWEN_WIDGETS_HOME", str(tmp_path / "qwen_home"))


@pytest.fixture(autouse=True)
def forget_default_client():
    """Each test starts and ends without a default client (qw.set_default_client is the seam)."""
    import qwen_widgets as qw

    qw.set_default_client(None)
    yield
    qw.set_default_client(None)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def simulator():
    return Simulator(seed=7, time_scale=TIME_SCALE)


@pytest.fixture
def server(simulator):
    with serve(simulator) as running:
        yield running


def fast_options(**overrides):
    """Client options scaled like the simulator, with a budget that does not slow tests."""
    options = dict(
        poll_schedule=PollSchedule().scaled(TIME_SCALE),
        poll_budget=RequestBudget(1000),
        retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.05),
    )
    options.update(overrides)
    return options


@pytest.fixture
def make_client(server):
    """Build AsyncQwenClients against the loopback server (use them with `async with`)."""

    def make(api_key=TEST_KEY, **overrides):
        return AsyncQwenClient(api_key, base_url=server.url, **fast_options(**overrides))

    return make


def loopback_client(server, **overrides) -> QwenClient:
    """A sync client talking to the simulator over a real loopback socket (close it)."""
    return QwenClient(TEST_KEY, base_url=server.url, **fast_options(**overrides))


@pytest.fixture
def client(server):
    """A sync client talking to the simulator over a real loopback socket."""
    with loopback_client(server) as made:
        yield made


def demo_client(**simulator_options) -> QwenClient:
    """A demo-mode sync client on a fast in-process simulator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DemoModeWarning)
        simulator = Simulator(seed=5, time_scale=TIME_SCALE, **simulator_options)
        return QwenClient(simulator=simulator, **fast_options())


class FakeClock:
    """Time advances only when someone sleeps; jitter is fixed at the middle."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)

    def random(self) -> float:
        return 0.5


class ManualClock(FakeClock):
    """Time stands still until the test moves it (`advance`): a sleeper wakes once time has
    passed its end, so a test decides exactly what happens before a slot comes."""

    def __init__(self, start: float = 1_800_000_000.0):
        super().__init__(start)
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, woken))
        await woken

    def sleeping(self) -> int:
        """How many sleepers wait for time to move."""
        return sum(not woken.done() for _, woken in self._sleepers)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for end, woken in self._sleepers:
            if end <= self.now and not woken.done():
                woken.set_result(None)
        self._sleepers = [(end, woken) for end, woken in self._sleepers if not woken.done()]


class SendRecorder(httpx.AsyncBaseTransport):
    """The real transport, noting when the client handed it each request: the client's own
    send times, which a request budget governs, free of the server's arrival jitter."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[float, str, int]] = []
        """(time.monotonic() at send, method, status) per request."""

    async def handle_async_request(self, request):
        at = time.monotonic()
        response = await self.inner.handle_async_request(request)
        self.sent.append((at, request.method, response.status_code))
        return response

    async def aclose(self):
        await self.inner.aclose()


def busiest_second(times: list[float]) -> int:
    """The most of `times` (sorted) in any one-second window that starts at one of them."""
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def walk(widget):
    """The widget and everything below it."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def wait_until(predicate, timeout=10.0):
    """Poll `predicate` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
