"""No key: the gateway fronts the built-in simulator, and serves its images at its own address."""

from __future__ import annotations

import httpx
import pytest

from qwen_widgets.gateway import start
from qwen_widgets.simulator import SIMULATOR_BASE_URL

from .conftest import Running, add_class, finish, make_simulator, submit, task_id
from .test_gateway import PNG


@pytest.fixture
def demo(data, clock):
    simulator = make_simulator(clock)
    with start(data, simulator=simulator, clock=clock) as server:
        yield Running(server, simulator, clock)


def first_url(image: dict) -> str:
    return image["url"][0] if isinstance(image["url"], list) else image["url"]


def test_the_class_flow_runs_offline_with_images_at_the_gateway(data, demo):
    codes = add_class(data, students=2, images_per_day=3)
    assert "simulator" in demo.server.mode
    alice, bob = demo.student(codes["student-1"]), demo.student(codes["student-2"])
    done = finish(demo, alice, task_id(submit(alice, n=2)))
    urls = [first_url(image) for image in done["result"]["images"]]
    assert all(url.startswith(demo.url + "/sim-images/") for url in urls)
    assert SIMULATOR_BASE_URL not in str(done)
    fetched = httpx.get(urls[1])  # no code: as the client's image fetcher asks
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
    forged = urls[0].replace("sig=", "sig=0")
    assert httpx.get(forged).status_code == 404  # only the exact URLs the gateway handed out
    assert httpx.get(demo.url + "/sim-images/task_nope/0.png").status_code == 404
    assert bob.get(f"/v1/tasks/{done['id']}").status_code == 404
    assert alice.get("/v1/balance").json()["used_balance"] == 2


def test_uploads_are_served_at_the_gateway_and_sent_back_in_the_simulators_form(data, demo):
    codes = add_class(data, students=1, images_per_day=3)
    alice = demo.student(codes["student-1"])
    upload = alice.post("/v1/uploads/images", files={"file": ("sketch.png", PNG, "image/png")})
    assert upload.status_code == 200, upload.text
    url = upload.json()["url"]
    assert url.startswith(demo.url + "/sim-uploads/")
    assert httpx.get(url).content == PNG
    made = task_id(submit(alice, image_urls=[url]))
    sent = demo.provider.tasks[made].request.image_urls
    assert len(sent) == 1 and sent[0].startswith(SIMULATOR_BASE_URL + "/sim-uploads/")


def test_start_without_a_simulator_uses_the_demo_one(tmp_path):
    with start(tmp_path / "d") as server:
        assert "simulator" in server.mode
        assert httpx.get(server.url + "/api/pricing/model", params={"model": "qwen-image-2.0"}).status_code == 200
