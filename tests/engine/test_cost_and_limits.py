"""The real cost of every image, the balance, and spending limits for a shared key (model.limits, the journal's count): on a loopback socket, and two real processes for limits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qwen_widgets as qw
from qwen_widgets.simulator import SimResponse

from ..conftest import TEST_KEY, fast_options

REPO = Path(__file__).resolve().parents[2]


# -- 2. cost and balance --------------------------------------------------------------------------


def test_cost_is_on_the_task_the_frame_and_the_history(client):
    task = client.generate("a paid fox", n=2)
    assert task.cost == pytest.approx(2 * 0.021)
    frame = qw.to_frame(task)
    assert list(frame["cost"]) == pytest.approx([task.cost, task.cost])
    history = qw.history(client.journal)
    assert history.drop_duplicates("local_id")["cost"].sum() == pytest.approx(task.cost)


def test_balance_goes_down_by_what_completed_tasks_cost(client):
    before = client.balance()
    task = client.generate("a fox", model="qwen-image-2.0-pro", n=3)
    after = client.balance()
    assert isinstance(before, qw.Balance) and not after.unlimited
    assert before.remaining - after.remaining == pytest.approx(task.cost)
    assert "balance:" in str(after)


def test_the_price_comes_from_the_user_else_the_pricing_endpoint_else_unknown(server, client):
    assert client.price_per_image("qwen-image-2.0-pro") == (pytest.approx(0.053), "pricing")
    with qw.QwenClient(TEST_KEY, base_url=server.url, price_per_image=0.05, **fast_options()) as priced:
        assert priced.price_per_image() == (0.05, "user")
    server.simulator.inject(SimResponse(404, {}, b"{}"), path_prefix="/api/pricing/", count=10)
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as unpriced:
        assert unpriced.price_per_image() == (None, "unknown")
        sweep = qw.sweep(prompt=["a", "b"], client=unpriced)
        assert "price unknown" in sweep.summary
        sweep.wait(120)
    server.simulator.faults.clear()
    sweep = qw.sweep(prompt=["a", "b"], client=client)
    assert "APIMart's pricing endpoint" in sweep.summary and "$0.04" in sweep.summary
    sweep.wait(120)


# -- 3. spending limits ---------------------------------------------------------------------------


def test_a_daily_image_limit_stops_the_next_generation_before_any_post(server):
    with qw.QwenClient(TEST_KEY, base_url=server.url, max_images_per_day=3, **fast_options()) as client:
        client.generate("two foxes", n=2)
        posts = server.simulator.count("POST")
        with pytest.raises(qw.SpendingLimitError) as caught:
            client.generate("two more", n=2)
        error = caught.value
        assert server.simulator.count("POST") == posts  # nothing sent
        assert (error.limit, error.used, error.needed, error.allowed) == ("images per day", 2, 2, 3)
        assert "room frees up at" in str(error) and error.frees_at > 0
        client.generate("one more fits", n=1)
        with pytest.raises(qw.SpendingLimitError):
            qw.sweep(prompt=["a", "b"], client=client)  # the whole plan is checked first
        assert server.simulator.count("POST") == posts + 1


def test_failed_and_refused_submissions_do_not_count(server):
    server.simulator.failure_rate = 1.0
    with qw.QwenClient(TEST_KEY, base_url=server.url, max_images_per_day=2, **fast_options()) as client:
        for _ in range(3):
            with pytest.raises(qw.TaskFailedError):
                client.generate("a failing fox", n=2)
        assert client.journal.usage(client.limits).images == 0


def test_a_spend_limit_counts_reported_cost_and_prices_the_rest(server, monkeypatch):
    monkeypatch.setenv("QWEN_WIDGETS_MAX_SPEND_PER_DAY", "0.10")
    monkeypatch.setenv("QWEN_WIDGETS_PRICE_PER_IMAGE", "0.021")
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        client.generate("a fox", n=4)  # 0.084 reported
        with pytest.raises(qw.SpendingLimitError, match="spend per day"):
            client.generate("one more", n=1)  # 0.084 + 0.021 > 0.10


def test_a_spend_limit_needs_a_price(server, monkeypatch):
    monkeypatch.setenv("QWEN_WIDGETS_MAX_SPEND_PER_DAY", "1")
    with pytest.raises(qw.RequestValidationError, match="price_per_image"):
        qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())


RACER = textwrap.dedent("""
    import sys, threading, qwen_widgets as qw
    url, go = sys.argv[1], sys.argv[2]
    client = qw.QwenClient("sk-test-0123456789abcdef", base_url=url, max_images_per_day=6,
                           poll_budget=qw.RequestBudget(1000))
    print("ready", flush=True)
    while not __import__("os").path.exists(go):
        pass
    results = []

    def one(i):
        try:
            client.submit(qw.ImageRequest(f"racing fox {i}"))
            results.append("sent")
        except qw.SpendingLimitError:
            results.append("refused")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(" ".join(results), flush=True)
""")


def test_two_processes_sharing_a_home_cannot_both_slip_past_a_limit(server, tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, server.url, str(go)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for racer in racers:
        assert racer.stdout.readline().strip() == "ready", racer.stderr.read()
    go.touch()  # both start submitting at once: ten submissions against a limit of six
    outputs = [racer.communicate(timeout=120) for racer in racers]
    words = " ".join(out for out, _ in outputs).split()
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in outputs]
    assert words.count("sent") == 6 and words.count("refused") == 4
    assert len(server.simulator.tasks) == 6  # no over-spend: exactly the limit reached the server
