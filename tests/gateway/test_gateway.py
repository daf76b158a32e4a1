"""The gateway on loopback in front of the simulator, used by two students' plain HTTP clients."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from qwen_widgets.simulator import SimResponse

from .conftest import MODEL, PLANTED_KEY, add_class, finish, submit, task_id, utc


def test_two_students_generate_and_see_only_their_own_tasks(data, gateway):
    codes = add_class(data, students=2, images_per_day=4)
    alice, bob = gateway.student(codes["student-1"]), gateway.student(codes["student-2"])
    mine = task_id(submit(alice, n=2))
    theirs = task_id(submit(bob, prompt="a lighthouse"))
    done = finish(gateway, alice, mine)
    assert done["status"] == "completed" and len(done["result"]["images"]) == 2
    assert done["cost"] == pytest.approx(0.042)
    url = done["result"]["images"][0]["url"]
    url = url[0] if isinstance(url, list) else url
    image = httpx.get(url)  # no credentials: an image fetcher sends none
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

    for client, other in ((alice, theirs), (bob, mine)):
        answer = client.get(f"/v1/tasks/{other}")
        assert answer.status_code == 404
        assert answer.json()["error"]["type"] == "not_found"
    assert bob.get(f"/v1/tasks/{theirs}").status_code == 200


def test_balance_per_code_says_what_is_left(data, gateway):
    codes = add_class(data, students=2, images_per_day=3, class_images_per_day=5)
    alice, bob = gateway.student(codes["student-1"]), gateway.student(codes["student-2"])
    finish(gateway, alice, task_id(submit(alice, n=2)))
    mine = alice.get("/v1/balance").json()
    assert {key: mine[key] for key in ("success", "remain_balance", "used_balance", "unlimited_quota", "unit",
                                       "class", "student")} == {
        "success": True, "remain_balance": 1, "used_balance": 2, "unlimited_quota": False, "unit": "images",
        "class": "art", "student": "student-1"}
    assert bob.get("/v1/balance").json()["remain_balance"] == 3
    whole = bob.get("/v1/user/balance").json()
    assert (whole["scope"], whole["remain_balance"], whole["used_balance"]) == ("class", 3, 2)


def test_student_budget_refuses_in_words_and_resets_at_midnight(data, gateway):
    codes = add_class(data, students=2, images_per_day=2)
    alice = gateway.student(codes["student-1"])
    finish(gateway, alice, task_id(submit(alice, n=2)))
    refused = submit(alice)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error == {"code": "limit_reached", "type": "spending_limit_error",
                     "message": "your budget for today is used: 2 of 2 images; it resets at 00:00 UTC",
                     "limit": "images per day", "scope": "student", "used": 2, "allowed": 2, "needed": 1,
                     "resets_at": utc("2026-03-03 00:00")}
    before = gateway.provider.simulator.count("POST")
    gateway.clock.set(utc("2026-03-03 00:00"))
    assert submit(alice).status_code == 200
    assert gateway.provider.simulator.count("POST") == before + 1


def test_class_cap_counts_every_student(data, gateway):
    codes = add_class(data, students=3, images_per_day=2, class_images_per_day=3)
    first, second, third = (gateway.student(codes[f"student-{i}"]) for i in (1, 2, 3))
    assert submit(first, n=2).status_code == 200
    assert submit(second, n=1).status_code == 200
    refused = submit(third)
    assert refused.status_code == 403
    assert refused.json()["error"]["scope"] == "class"
    assert refused.json()["error"]["message"] == \
        "your class budget for today is used: 3 of 3 images; it resets at 00:00 UTC"


def test_a_short_result_is_settled_at_what_came_back(data, clock, tmp_path):
    from qwen_widgets.gateway import start
    from qwen_widgets.simulator import serve

    from .conftest import Running, make_simulator

    codes = add_class(data, students=1, images_per_day=6)
    with serve(make_simulator(clock, api_keys={PLANTED_KEY}, short_result_rate=1.0, seed=4)) as provider, \
            start(data, api_key=PLANTED_KEY, base_url=provider.url, clock=clock) as server:
        running = Running(server, provider, clock)
        alice = running.student(codes["student-1"])
        done = finish(running, alice, task_id(submit(alice, n=6)))
        returned = len(done["result"]["images"])
        assert returned < 6
        assert alice.get("/v1/balance").json()["used_balance"] == returned


def test_a_failed_task_releases_its_reservation(data, clock):
    from qwen_widgets.gateway import start
    from qwen_widgets.simulator import serve

    from .conftest import Running, make_simulator

    codes = add_class(data, students=1, images_per_day=2)
    with serve(make_simulator(clock, api_keys={PLANTED_KEY}, failure_rate=1.0)) as provider, \
            start(data, api_key=PLANTED_KEY, base_url=provider.url, clock=clock) as server:
        running = Running(server, provider, clock)
        alice = running.student(codes["student-1"])
        failed = task_id(submit(alice, n=2))
        assert alice.get("/v1/balance").json()["remain_balance"] == 0  # reserved while it runs
        assert submit(alice).status_code == 403
        assert finish(running, alice, failed)["status"] == "failed"
        assert alice.get("/v1/balance").json()["remain_balance"] == 2


def test_spend_per_day_uses_the_providers_price_and_reported_cost(data, gateway):
    codes = add_class(data, students=2, images_per_day=10, spend_per_day=0.05)
    alice = gateway.student(codes["student-1"])
    finish(gateway, alice, task_id(submit(alice, n=2)))  # 2 x 0.021 = 0.042 reported
    refused = submit(alice)  # another 0.021 would pass 0.05
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["limit"], error["scope"], error["used"], error["allowed"], error["needed"]) == \
        ("spend per day", "class", 0.042, 0.05, 0.021)


def test_total_images_over_the_class_life(data, gateway):
    codes = add_class(data, students=1, images_per_day=5, total_images=3)
    alice = gateway.student(codes["student-1"])
    finish(gateway, alice, task_id(submit(alice, n=3)))
    gateway.clock.set(utc("2026-03-04 10:00"))
    refused = submit(alice)
    assert refused.status_code == 403
    assert refused.json()["error"]["limit"] == "total images" and refused.json()["error"]["resets_at"] is None


def test_outside_the_window_nothing_is_sent(data, gateway):
    codes = add_class(data, students=1, images_per_day=5, window="10:00-11:00")
    alice = gateway.student(codes["student-1"])
    gateway.clock.set(utc("2026-03-02 12:14"))
    posts = gateway.provider.simulator.count("POST")
    refused = submit(alice)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "outside_window" and error["type"] == "spending_limit_error"
    assert error["message"] == "this class generates between 10:00 and 11:00 UTC; it is 12:14 UTC now"
    assert error["resets_at"] == utc("2026-03-03 10:00")
    assert gateway.provider.simulator.count("POST") == posts
    balance = alice.get("/v1/balance").json()
    assert balance["open_now"] is False and balance["opens_at"] == utc("2026-03-03 10:00")
    gateway.clock.set(utc("2026-03-03 10:00"))
    assert submit(alice).status_code == 200


def test_wrong_and_revoked_codes_answer_401(data, gateway):
    from qwen_widgets.gateway.cli import main

    codes = add_class(data, students=2, images_per_day=5)
    alice = gateway.student(codes["student-1"])
    assert alice.get("/v1/balance").status_code == 200
    assert main(["revoke", "art", "student-1", "--data", str(data)]) == 0  # while the gateway runs
    for client in (alice, gateway.student("qwg_not-a-code"), gateway.student(PLANTED_KEY)):
        answer = submit(client)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"
    assert "revoked" in submit(alice).json()["error"]["message"]
    assert httpx.get(gateway.url + "/v1/balance").status_code == 401
    assert gateway.student(codes["student-2"]).get("/v1/balance").status_code == 200


def test_a_new_code_replaces_the_old_and_keeps_the_usage(data, gateway):
    from qwen_widgets.gateway import DataFolder, Store

    codes = add_class(data, students=1, images_per_day=5)
    old = gateway.student(codes["student-1"])
    finish(gateway, old, task_id(submit(old, n=2)))
    with Store(DataFolder(data).database) as store:
        new_code = store.reissue("art", "student-1")
    assert submit(old).status_code == 401
    assert gateway.student(new_code).get("/v1/balance").json()["used_balance"] == 2


def test_prompt_rules_refuse_before_sending_and_tell_the_teacher(data, gateway):
    codes = add_class(data, students=1, images_per_day=5, rules=["blood", "re:gor(e|y)"])
    alice = gateway.student(codes["student-1"])
    posts = gateway.provider.simulator.count("POST")
    refused = submit(alice, prompt="A gory battle at dawn")
    assert refused.status_code == 400
    assert refused.json()["error"] == {"code": "prompt_rule", "type": "invalid_request_error", "param": "prompt",
                                       "message": "this prompt is not allowed in this class; change it, or ask "
                                                  "your teacher"}
    assert "gor" not in refused.text  # the student is not told which rule
    assert gateway.provider.simulator.count("POST") == posts
    assert alice.get("/v1/balance").json()["used_balance"] == 0
    events = gateway.teacher().get("/teacher/api/classes/art").json()["events"]
    assert events[0]["kind"] == "prompt rule" and "re:gor(e|y)" in events[0]["detail"]
    assert submit(alice, prompt="a bloodhound").status_code == 200


def test_an_idempotent_resend_makes_one_task_and_one_charge(data, gateway):
    codes = add_class(data, students=1, images_per_day=4)
    alice = gateway.student(codes["student-1"])
    simulator = gateway.provider.simulator
    # the provider makes the task, then its answer is lost on the way (a 502 from a proxy)
    simulator.inject(SimResponse(502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
                     method="POST", path_prefix="/v1/images/generations", process=True)
    lost = submit(alice, n=2, key="key-1")
    assert lost.status_code == 502
    assert alice.get("/v1/balance").json()["used_balance"] == 2  # kept: the outcome is unknown
    first = task_id(submit(alice, n=2, key="key-1"))  # the client resends, same key
    again = submit(alice, n=2, key="key-1")  # and once more, answered from the ledger
    assert task_id(again) == first and again.headers["idempotency-replayed"] == "true"
    assert len(simulator.tasks) == 1
    finish(gateway, alice, first)
    assert alice.get("/v1/balance").json()["used_balance"] == 2
    other_body = submit(alice, n=1, key="key-1")
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"


def test_students_idempotency_keys_do_not_meet_at_the_provider(data, gateway):
    codes = add_class(data, students=2, images_per_day=4)
    alice, bob = gateway.student(codes["student-1"]), gateway.student(codes["student-2"])
    mine = task_id(submit(alice, key="same-key"))
    theirs = task_id(submit(bob, key="same-key"))
    assert mine != theirs
    keys = {entry["idempotency_key"] for entry in gateway.provider.simulator.log if entry["method"] == "POST"}
    assert "same-key" not in keys and len(keys) == 2


def test_a_refused_submit_releases_the_reservation(data, gateway):
    codes = add_class(data, students=1, images_per_day=2)
    alice = gateway.student(codes["student-1"])
    bad = submit(alice, size="5:4")  # the provider refuses the size
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "size"
    assert alice.get("/v1/balance").json()["used_balance"] == 0
    unknown = alice.post("/v1/images/generations", json={"model": "qwen-image-9", "prompt": "x", "n": 2},
                         headers={"Idempotency-Key": "k"})
    assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "model_not_found"
    assert alice.get("/v1/balance").json()["used_balance"] == 0


def test_the_gateway_checks_the_request_before_reserving(data, gateway):
    codes = add_class(data, students=1, images_per_day=2)
    alice = gateway.student(codes["student-1"])
    for body, param in (({"model": MODEL, "prompt": "x", "n": 7}, "n"), ({"model": MODEL, "prompt": " "}, "prompt"),
                        ({"prompt": "x"}, "model"), ({"model": MODEL, "prompt": "x", "n": True}, "n")):
        answer = alice.post("/v1/images/generations", json=body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert alice.post("/v1/images/generations", content=b"[1]").status_code == 400
    bad_key = alice.post("/v1/images/generations", json={"model": MODEL, "prompt": "x"},
                         headers={"Idempotency-Key": "has space"})
    assert bad_key.json()["error"]["param"] == "Idempotency-Key"


def test_request_rate_per_code(data, gateway):
    codes = add_class(data, students=2, images_per_day=5, requests_per_minute=3)
    alice, bob = gateway.student(codes["student-1"]), gateway.student(codes["student-2"])
    assert [alice.get("/v1/balance").status_code for _ in range(3)] == [200, 200, 200]
    limited = alice.get("/v1/balance")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "60"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert bob.get("/v1/balance").status_code == 200  # one student does not slow another
    gateway.clock.advance(60)
    assert alice.get("/v1/balance").status_code == 200


def test_body_caps(data, gateway):
    codes = add_class(data, students=1, images_per_day=5)
    alice = gateway.student(codes["student-1"])
    big = alice.post("/v1/images/generations", json={"model": MODEL, "prompt": "x" * 70_000})
    assert big.status_code == 413 and "64 KB" in big.json()["error"]["message"]
    huge = alice.post("/v1/uploads/images", files={"file": ("a.png", b"\x89PNG" + b"0" * (21 * 2**20))})
    assert huge.status_code == 413 and "20 MB" in huge.json()["error"]["message"]
    stranger = httpx.post(gateway.url + "/v1/uploads/images", files={"file": ("a.png", b"\x89PNG" + b"0" * 1000)})
    assert stranger.status_code == 401


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def test_uploads_belong_to_their_student(data, gateway):
    codes = add_class(data, students=2, images_per_day=5)
    alice, bob = gateway.student(codes["student-1"]), gateway.student(codes["student-2"])
    upload = alice.post("/v1/uploads/images", files={"file": ("sketch.png", PNG, "image/png")})
    assert upload.status_code == 200, upload.text
    url = upload.json()["url"]
    assert submit(alice, image_urls=[url]).status_code == 200
    stolen = submit(bob, image_urls=[url])
    assert stolen.status_code == 400 and stolen.json()["error"]["param"] == "image_urls"


def test_catalogue_and_pricing_pass_through(data, gateway):
    codes = add_class(data, students=1, images_per_day=5)
    alice = gateway.student(codes["student-1"])
    assert [m["id"] for m in alice.get("/v1/models").json()["data"]] == ["qwen-image-2.0", "qwen-image-2.0-pro"]
    schema = alice.get("/v1/model-schema", params={"model": MODEL, "operation": "image_generation"})
    assert schema.json()["model"] == MODEL
    assert httpx.get(gateway.url + "/v1/models").status_code == 401
    pricing = httpx.get(gateway.url + "/api/pricing/model", params={"model": MODEL})  # public, no code
    assert pricing.status_code == 200 and pricing.json()["data"]["model_price"] == 0.021
    missing = alice.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


def test_the_real_key_never_reaches_a_student_or_a_log(data, gateway, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    codes = add_class(data, students=1, images_per_day=5)
    alice = gateway.student(codes["student-1"])
    simulator = gateway.provider.simulator
    escaped = json.dumps(PLANTED_KEY)[1:-1].replace("/", "\\/")  # as a JSON encoder that escapes / writes it
    encoded = quote(PLANTED_KEY, safe="")
    echo = ('{"error": {"code": 400, "type": "invalid_request_error", "message": "bad request for key '
            + PLANTED_KEY + '", "escaped": "' + escaped + '", "encoded": "' + encoded + '"}}')
    assert json.loads(echo)["error"]["escaped"] == PLANTED_KEY
    simulator.inject(SimResponse(400, {"Content-Type": "application/json", "X-Request-Id": PLANTED_KEY},
                                 echo.encode()), method="POST", path_prefix="/v1/images/generations")
    simulator.inject(SimResponse(500, {"Content-Type": "text/plain"}, f"crash near {PLANTED_KEY}".encode()),
                     method="GET", path_prefix="/v1/models")
    answers = [submit(alice), alice.get("/v1/models")]
    done = task_id(submit(alice, n=2))
    answers += [alice.get(f"/v1/tasks/{done}")]
    gateway.clock.advance(10)
    answers += [alice.get(f"/v1/tasks/{done}"), alice.get("/v1/balance"), alice.get("/v1/user/balance"),
                httpx.get(gateway.url + "/"), gateway.teacher().get("/teacher"),
                gateway.teacher().get("/teacher/class/art"), gateway.teacher().get("/teacher/api/classes/art")]
    assert answers[0].status_code == 400 and "[gateway key hidden]" in answers[0].text
    assert answers[0].headers["x-request-id"] == "[gateway key hidden]"
    assert answers[1].status_code == 500
    forms = {PLANTED_KEY, escaped, encoded}
    for answer in answers:
        seen = answer.text + "".join(f"{name}: {value}\n" for name, value in answer.headers.items())
        for form in forms:
            assert form not in seen, answer.request.url
    logged = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    assert "POST /v1/images/generations" in logged  # the log was captured
    for form in forms:
        assert form not in logged
    assert any(entry["authorization"] for entry in simulator.log)  # the key did reach the provider


def test_concurrent_submits_cannot_pass_the_class_cap_together(data, gateway):
    from concurrent.futures import ThreadPoolExecutor

    codes = add_class(data, students=30, images_per_day=2, class_images_per_day=20)
    students = [gateway.student(code) for code in codes.values()]
    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(lambda client: submit(client, n=1).status_code, students + students))
    assert statuses.count(200) == 20 and statuses.count(403) == 40
    assert len(gateway.provider.simulator.tasks) == 20
