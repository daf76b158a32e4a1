"""Both clients against the simulator served on a real loopback socket."""

from __future__ import annotations

import ast
import asyncio
import io
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.simulator import SimResponse, Simulator, serve

from ..conftest import TEST_KEY, SendRecorder, busiest_second, fast_options

pytestmark = pytest.mark.anyio

TABLE = {  # docs/api-contract.md section 1.3
    ("1:1", "1K"): (1024, 1024), ("1:1", "2K"): (2048, 2048),
    ("4:3", "1K"): (1152, 864), ("4:3", "2K"): (2048, 1536),
    ("3:4", "1K"): (864, 1152), ("3:4", "2K"): (1536, 2048),
    ("16:9", "1K"): (1280, 720), ("16:9", "2K"): (2048, 1152),
    ("9:16", "1K"): (720, 1280), ("9:16", "2K"): (1152, 2048),
    ("3:2", "1K"): (1248, 832), ("3:2", "2K"): (2048, 1360),
    ("2:3", "1K"): (832, 1248), ("2:3", "2K"): (1360, 2048),
}  # fmt: skip
COMBOS = [(size, res, 1 + i % 6) for i, (size, res) in enumerate(TABLE)]


@pytest.mark.parametrize("size,resolution,n", COMBOS)
async def test_generate_every_size_and_resolution(make_client, simulator, size, resolution, n):
    async with make_client() as client:
        updates = []
        task = await client.generate("a red fox in snow", size=size, resolution=resolution, n=n,
                                     on_update=updates.append)
        assert task.status is qw.TaskStatus.COMPLETED
        assert len(task.images) == n
        assert all((img.width, img.height) == TABLE[size, resolution] for img in task.images)
        assert all(img.expires_at is not None and img.expires_at.tzinfo for img in task.images)
        assert updates[0].status is qw.TaskStatus.SUBMITTED and updates[-1] == task
        png = await client.fetch_image(task.images[-1])
        assert Image.open(io.BytesIO(png)).size == TABLE[size, resolution]
    assert simulator.count("POST") == 1


@pytest.mark.parametrize("n", range(1, 7))
async def test_every_n_returns_that_many_images(make_client, n):
    async with make_client() as client:
        task = await client.generate("a lighthouse", n=n)
    assert [img.index for img in task.images] == list(range(n))
    assert len(set(task.urls)) == n


async def test_payload_reaches_server_as_sent(make_client, simulator):
    request = qw.ImageRequest("a cat", model="qwen-image-2.0-pro", size="3:2", resolution="2K",
                              n=2, negative_prompt="blurry", image_urls=("https://example.com/a.png",))
    async with make_client() as client:
        task = await client.submit(request)
    assert simulator.tasks[task.task_id].request.to_payload() == request.to_payload()


async def test_task_failure_raises_with_the_task(server, make_client):
    server.simulator.failure_rate = 1.0
    async with make_client() as client:
        with pytest.raises(qw.TaskFailedError) as caught:
            await client.generate("a fox")
        assert caught.value.task.status is qw.TaskStatus.FAILED
        assert caught.value.task.error  # the server's message is kept
        waited = await client.wait(caught.value.task.task_id)  # wait() returns, not raises
        assert waited.status is qw.TaskStatus.FAILED


async def test_wrong_key_is_authentication_error_without_the_key(server, make_client):
    server.simulator.api_keys = {"the-right-key"}
    async with make_client(api_key="sk-wrong-key-ABCDEFG") as client:
        with pytest.raises(qw.AuthenticationError) as caught:
            await client.submit(qw.ImageRequest("a fox"))
    error = caught.value
    assert error.status_code == 401 and "check your API key" in str(error)
    assert "sk-wrong-key-ABCDEFG" not in str(error) + repr(error) + repr(client)
    assert server.simulator.count("POST") == 1  # a 401 is not retried


async def test_429_then_success_retries_submit_and_honours_retry_after(server, make_client):
    sim = server.simulator
    sim.inject(SimResponse(429, {"Retry-After": "0"}, b'{"error":{"message":"slow down"}}'),
               method="POST", count=2)
    retries = []
    async with make_client() as client:
        task = await client.generate("a fox", on_retry=lambda e, d: retries.append((e, d)))
    assert task.status is qw.TaskStatus.COMPLETED
    assert sim.count("POST") == 3 and len(sim.tasks) == 1
    assert [type(e) for e, _ in retries] == [qw.RateLimitError] * 2
    assert all(e.retry_after == 0 and d == 0 for e, d in retries)


async def test_rate_limited_server_is_survived_by_polling(server, make_client):
    server.simulator.rate_limit = 3  # per second, far below what polling would like
    retries = []
    async with make_client(poll_schedule=qw.PollSchedule(first_delay=0.0, min_interval=0.01,
                                                         max_interval=0.01)) as client:
        task = await client.generate("a fox", on_retry=lambda e, d: retries.append(e))
    assert task.status is qw.TaskStatus.COMPLETED
    assert retries and all(isinstance(e, qw.RateLimitError) for e in retries)


async def test_polls_of_many_tasks_stay_within_the_shared_budget(server, make_client):
    """30 tasks that would each like to poll every 10 ms share a budget of 20 requests/s."""
    server.simulator.duration = 100  # 1 s tasks at this time scale
    budget = qw.RequestBudget(20)
    eager = qw.PollSchedule(first_delay=0.0, min_interval=0.01, max_interval=0.01)
    # keep_images=False: the in-process server renders PNGs while holding the GIL, which
    # would stall the client's loop and bunch its polls in a way no remote server causes
    recorder = SendRecorder()
    started = time.monotonic()
    async with make_client(poll_budget=budget, poll_schedule=eager, keep_images=False,
                           transport=recorder) as client:
        tasks = await asyncio.gather(*(client.generate(f"fox {i}") for i in range(30)))
    assert all(t.status is qw.TaskStatus.COMPLETED for t in tasks)
    # polls and submits share the budget; measured when the client sent them, since arrival
    # times add the server's own delays (a loaded server logs a late request next to the next)
    times = sorted(at for at, _, _ in recorder.sent)
    assert len(times) == len([e for e in server.simulator.log if e["path"].startswith("/v1/")])
    # slots are 50 ms apart when reserved; a window can gain one more poll from a closed
    # boundary and one from a loop stall that releases two late slots together
    assert len(times) > 40 and busiest_second(times) <= 20 + 2
    # on average, the budget: no request goes before its slot, the first slot is not before
    # `started`, and slots are 50 ms apart
    assert len(times) <= 1 + 20 * (times[-1] - started)


async def test_5xx_burst_while_polling_is_retried(server, make_client):
    sim = server.simulator
    sim.inject(SimResponse(502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"),
               method="GET", count=2)
    sim.inject(SimResponse(500, {}, b""), method="GET", count=2)
    retries = []
    async with make_client() as client:
        task = await client.generate("a fox", on_retry=lambda e, d: retries.append(e))
    assert task.status is qw.TaskStatus.COMPLETED
    assert [e.status_code for e in retries] == [502, 502, 500, 500]
    assert all(isinstance(e, qw.ServerError) for e in retries)


def keys_sent(simulator) -> list[str]:
    return [entry["idempotency_key"] for entry in simulator.log if entry["method"] == "POST"]


async def test_submit_500_is_resent_with_the_same_key(server, make_client):
    server.simulator.inject(SimResponse(500, {}, b'{"error":{"message":"boom"}}'), method="POST")
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
    keys = keys_sent(server.simulator)
    assert len(keys) == 2 and keys[0] == keys[1]
    assert list(server.simulator.tasks) == [task.task_id]


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_failure_after_processing_is_resent_and_replayed(server, make_client, status):
    server.simulator.inject(SimResponse(status, {}, b"gateway"), method="POST", process=True)
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
    assert server.simulator.count("POST") == 2 and list(server.simulator.tasks) == [task.task_id]


async def test_connection_dropped_after_post_is_resent_with_its_key_and_bills_once(server, make_client):
    sim = server.simulator
    sim.inject(SimResponse(action="drop"), method="POST", process=True)
    async with make_client() as client:
        task = await client.generate(qw.ImageRequest("a fox", n=3))
    assert len(task.images) == 3 and list(sim.tasks) == [task.task_id]
    assert len(set(keys_sent(sim))) == 1 and sim.count("POST") == 2


async def test_connection_dropped_after_post_is_never_resent_without_keys(server, make_client):
    sim = server.simulator
    sim.inject(SimResponse(action="drop"), method="POST", process=True)
    request = qw.ImageRequest("a fox", n=3)
    async with make_client(resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
            await client.generate(request)
    assert caught.value.request == request and caught.value.idempotency_key
    assert "NOT resent" in str(caught.value)
    assert sim.count("POST") == 1  # the task exists on the server; a second POST could bill twice
    assert len(sim.tasks) == 1


async def test_stalled_submit_answer_is_resent_with_the_same_key(server, make_client):
    server.simulator.inject(delay=30.0, method="POST")  # far beyond the 0.2 s read timeout
    retries = []
    async with make_client(timeout=0.2) as client:
        task = await client.submit(qw.ImageRequest("a fox"), on_retry=lambda e, d: retries.append(e))
    assert [type(e) for e in retries] == [qw.TransportError] and "ReadTimeout" in str(retries[0])
    assert len(set(keys_sent(server.simulator))) == 1 and list(server.simulator.tasks) == [task.task_id]


async def test_connection_refused_is_retried_then_transport_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retries = []
    async with qw.AsyncQwenClient(TEST_KEY, base_url=f"http://127.0.0.1:{port}",
                                  **fast_options()) as client:
        with pytest.raises(qw.TransportError, match="ConnectError"):
            await client.submit(qw.ImageRequest("a fox"), on_retry=lambda e, d: retries.append(e))
    assert len(retries) == qw.RetryPolicy().max_attempts - 1  # never sent, so safe to retry


async def test_malformed_poll_answer_recovers(server, make_client):
    server.simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, b'{"code": 200, "da'),
                            method="GET")
    retries = []
    async with make_client() as client:
        task = await client.generate("a fox", on_retry=lambda e, d: retries.append(e))
    assert task.status is qw.TaskStatus.COMPLETED
    assert [type(e) for e in retries] == [qw.MalformedResponseError]


async def test_persistently_malformed_poll_raises_api_error(server, make_client):
    server.simulator.inject(SimResponse(200, {}, b"[1, 2]"), method="GET", count=100)
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        with pytest.raises(qw.MalformedResponseError) as caught:
            await client.get_task(task.task_id)
    assert isinstance(caught.value, qw.APIError) and caught.value.status_code == 200


async def test_malformed_submit_answer_is_resent_and_replayed(server, make_client):
    server.simulator.inject(SimResponse(200, {}, b"<html>oops</html>"), method="POST", process=True)
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
    assert server.simulator.count("POST") == 2 and list(server.simulator.tasks) == [task.task_id]


async def test_server_validation_error_is_api_error_400(server, make_client):
    async with make_client() as client:
        response = await client._http.post("/v1/images/generations",
                                           json={"model": "qwen-image-2.0", "prompt": "a", "size": "5:4"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("size: must be one of")
    assert response.json()["error"]["param"] == "size"


async def test_deadline_raises_timeout_with_task_id(server, make_client):
    server.simulator.duration = 1000  # 10 s at this scale
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a slow fox"))
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task, timeout=0.3)
    error = caught.value
    assert error.task_id == task.task_id and task.task_id in str(error)
    assert error.task is not None and not error.task.done
    assert "may still" in str(error)


async def test_unknown_task_is_not_found(make_client):
    async with make_client() as client:
        with pytest.raises(qw.NotFoundError):
            await client.get_task("task_does_not_exist")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "x?y", "x#y", "has space", ""])
async def test_bad_task_ids_never_reach_the_network(server, make_client, bad):
    async with make_client() as client:
        with pytest.raises(qw.RequestValidationError) as caught:
            await client.wait(bad)
    assert caught.value.field == "task_id"
    assert server.simulator.log == []


async def test_image_fetch_never_carries_authorization_even_on_another_host():
    simulator = Simulator(seed=3, time_scale=0.01)
    with serve(simulator, image_host="localhost") as server:  # images on another origin
        async with qw.AsyncQwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
            task = await client.generate("a fox", n=2)
            assert all(url.startswith(f"http://localhost:{server.port}/") for url in task.urls)
            for image in task.images:
                await client.fetch_image(image)
            # same host as the API: still no credentials from the image client
            same_origin = task.urls[0].replace("localhost", "127.0.0.1")
            await client.fetch_image(same_origin)
    api = [e for e in simulator.log if e["path"].startswith("/v1/")]
    images = [e for e in simulator.log if e["path"].startswith("/sim-images/")]
    assert api and all(e["authorization"] for e in api)
    assert len(images) == 3 and not any(e["authorization"] for e in images)


def test_sync_client_inside_a_running_event_loop(server):
    """What a notebook cell does: call the sync API while the kernel's loop is running."""

    async def cell():
        with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
            assert asyncio.get_running_loop()  # we really are inside a loop
            task = client.generate("a fox in a running loop", n=2)
            return task, client.fetch_image(task.images[0])

    task, png = asyncio.run(cell())
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 2
    assert png.startswith(b"\x89PNG")


def test_sync_client_from_several_threads(server):
    results = []
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        threads = [threading.Thread(target=lambda i=i: results.append(client.generate(f"fox {i}")))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len({t.task_id for t in results}) == 4


# -- regressions found in review ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["sk-abc\ndef-0123456789", "sk-abc def-0123456789", "sk-\x00-0123456789"])
def test_unusable_key_is_refused_at_construction_without_echo(key):
    with pytest.raises(qw.RequestValidationError) as caught:
        qw.AsyncQwenClient(key, base_url="http://127.0.0.1:9")
    assert caught.value.field == "api_key"
    assert key.strip() not in str(caught.value) and "0123456789" not in str(caught.value)


async def test_undecodable_submit_answer_is_resent_and_replayed(server, make_client):
    server.simulator.inject(SimResponse(200, {"Content-Encoding": "gzip"}, b"not gzip at all"),
                            method="POST", process=True)
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
    assert server.simulator.count("POST") == 2 and list(server.simulator.tasks) == [task.task_id]


async def test_absurdly_nested_poll_answer_is_malformed_not_recursion_error(server, make_client):
    server.simulator.inject(SimResponse(200, {}, b"[" * 100_000), method="GET", count=100)
    async with make_client() as client:
        with pytest.raises(qw.MalformedResponseError):
            await client.get_task("task_01ABC")


async def test_watching_rides_out_an_outage_longer_than_the_retry_policy(server, make_client):
    server.simulator.inject(SimResponse(502, {}, b"bad gateway"), method="GET", count=12)
    retries = []
    async with make_client(retry=qw.RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_cap=0.01)) as client:
        task = await client.generate("a fox", on_retry=lambda e, d: retries.append(e))
    assert task.status is qw.TaskStatus.COMPLETED and len(retries) == 12


async def test_slow_answers_never_hold_wait_past_its_deadline(server, make_client):
    server.simulator.duration = 10_000
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        server.simulator.inject(delay=30.0, method="GET", count=10)  # the read timeout is 30 s too
        started = time.monotonic()
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task, timeout=0.5)
    assert time.monotonic() - started < 10.0  # not held until the 30 s answer
    assert caught.value.task_id == task.task_id


async def test_retries_cut_by_the_deadline_end_as_timeout_not_server_error(server, make_client):
    server.simulator.duration = 10_000
    # the first poll (at 0.01 s) is answered long before the 5 s deadline, however loaded the
    # machine, and the wait it asks for crosses the deadline
    server.simulator.inject(SimResponse(503, {"Retry-After": "60"}, b"{}"), method="GET", count=100)
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task, timeout=5.0)
    assert isinstance(caught.value.__cause__, qw.ServerError)


async def test_image_redirect_from_https_to_http_is_refused():
    def handler(request):
        if request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": "http://cdn.example/a.png"})
        return httpx.Response(200, content=b"\x89PNG\r\n\x1a\n" + b"0" * 10)

    async with qw.AsyncQwenClient(TEST_KEY, base_url="http://127.0.0.1:9",
                                  image_transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(qw.ImageFetchError, match="https to http"):
            await client.fetch_image("https://cdn.example/a.png")
        assert (await client.fetch_image("http://cdn.example/a.png")).startswith(b"\x89PNG")


def test_ctrl_c_during_submit_reports_the_task_id_instead_of_losing_it():
    """A real SIGINT in a real process, while the POST's answer is still on its way."""
    # Ctrl-C comes once the POST has reached the server, not after a fixed time: the journal
    # write before it can take longer than any fixed time on a loaded machine. It is sent to
    # the main thread until its handler ran: one that lands just before the thread blocks on
    # a lock is not handled until the lock is released. The handler acts once, like a person
    # pressing Ctrl-C once.
    script = textwrap.dedent("""
        import signal, threading, time, warnings
        warnings.simplefilter("ignore")
        import qwen_widgets as qw
        from qwen_widgets.simulator import Simulator
        sim = Simulator(time_scale=1.0)
        sim.inject(delay=1.0, method="POST")
        client = qw.QwenClient(simulator=sim)
        interrupted = threading.Event()
        def on_sigint(signum, frame):
            if not interrupted.is_set():
                interrupted.set()
                raise KeyboardInterrupt
        signal.signal(signal.SIGINT, on_sigint)
        def interrupt_once_posted():
            while sim.count("POST") == 0:
                time.sleep(0.005)
            while True:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                if interrupted.wait(0.2):
                    return
        threading.Thread(target=interrupt_once_posted, daemon=True).start()
        try:
            client.generate("a fox")
        except KeyboardInterrupt as interrupt:
            print("INTERRUPT", interrupt)
            print("SERVER", list(sim.tasks), sim.count("POST"))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert "SERVER" in lines, result.stderr
    task_ids, posts = lines["SERVER"].rsplit(" ", 1)
    created = ast.literal_eval(task_ids)  # the list printed by the child
    assert posts == "1" and len(created) == 1
    assert created[0] in lines["INTERRUPT"] and "Re-attach" in lines["INTERRUPT"]
