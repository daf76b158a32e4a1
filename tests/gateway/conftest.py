"""Fixtures for the gateway: a fake clock, the simulator as the provider, the gateway on loopback.

The provider is the simulator on a real loopback socket that accepts only a planted "real"
key; the gateway runs on another loopback port in front of it, holding that key. Students are
plain httpx clients speaking the API, as the package's client would. Time is a fake clock
shared by the gateway and the simulator: a task finishes when a test moves the clock, and a
day or a lesson window passes the same way; nothing waits on the wall clock.
"""

from __future__ import annotations

import calendar
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from qwen_widgets.gateway import DataFolder, Store, start
from qwen_widgets.simulator import Simulator, serve

PLANTED_KEY = "sk-planted/REAL+key_0123456789"
"""A provider key with characters that JSON escapes (/) and URL-encodes (/ and +)."""
MODEL = "qwen-image-2.0"
TASK_SECONDS = 5.0


class FakeClock:
    """Unix time that moves only when a test says so (read from several threads)."""

    def __init__(self, now: float):
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now


def utc(text: str) -> float:
    """'2026-03-02 10:30' -> unix seconds."""
    return float(calendar.timegm(__import__("time").strptime(text, "%Y-%m-%d %H:%M")))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2026-03-02 10:30"))


def make_simulator(clock: FakeClock, **options) -> Simulator:
    """A provider whose tasks take exactly TASK_SECONDS of the fake clock."""
    settings = dict(seed=11, clock=clock, duration=TASK_SECONDS, duration_spread=0.0, url_style="mixed")
    settings.update(options)
    return Simulator(**settings)


@pytest.fixture
def provider(clock):
    """The simulator on loopback, accepting only the planted real key."""
    simulator = make_simulator(clock, api_keys={PLANTED_KEY})
    with serve(simulator) as running:
        yield running


@pytest.fixture
def data(tmp_path) -> Path:
    return tmp_path / "gateway-data"


def add_class(data: Path, name: str = "art", **options) -> dict[str, str]:
    """Make a class in the data folder; returns {student name: code}."""
    settings = dict(students=2, images_per_day=4)
    settings.update(options)
    folder = DataFolder(data).create()
    with Store(folder.database) as store:
        return dict(store.add_class(name, **settings))


@dataclass
class Running:
    """A gateway under test and what it fronts."""

    server: object
    provider: object
    clock: FakeClock

    @property
    def url(self) -> str:
        return self.server.url

    def student(self, code: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {code}"}, timeout=30)

    def teacher(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.server.token}"}, timeout=30)


@pytest.fixture
def gateway(data, provider, clock) -> Iterator[Running]:
    """The gateway with the planted key in front of the loopback provider."""
    DataFolder(data).create()
    with start(data, api_key=PLANTED_KEY, base_url=provider.url, clock=clock) as server:
        yield Running(server, provider, clock)


def submit(client: httpx.Client, *, prompt: str = "a red kite over the sea", n: int = 1, key: str | None = None,
           **extra) -> httpx.Response:
    headers = {"X-APIMart-Response-Version": "2026-07-27"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/images/generations", json={"model": MODEL, "prompt": prompt, "size": "1:1",
                                                       "resolution": "1K", "n": n, **extra}, headers=headers)


def task_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def finish(running: Running, client: httpx.Client, task: str) -> dict:
    """Move the clock past the task's end and poll it once, as the student's client would."""
    running.clock.advance(TASK_SECONDS + 1)
    answer = client.get(f"/v1/tasks/{task}")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]
