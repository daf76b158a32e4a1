"""What happens to each student request: who sent it, may it go, what it costs, and what came back.

The order for a submit is the point of the gateway:
1. the code (or JupyterHub token) names a student of a class; a wrong or revoked one is a 401;
2. the request rate of that student, so one polling loop cannot use up the class's share;
3. a resend (same student, same Idempotency-Key, same body) is answered from the ledger, or
   sent again under the same key when the first answer was lost: never a second reservation,
   never a second task;
4. the class's prompt rules, then reference images that belong to another student;
5. the lesson window and the budgets, against what is already counted; the request is then
   reserved at n images (and n x price) *before* it is sent, so concurrent requests cannot
   all slip under the same cap;
6. the provider's answer: a task id is recorded; a clear refusal releases the reservation; an
   unknown outcome keeps it (the student's client resends with the same key).
A task is settled when its owner polls it to the end: at the images it really returned and the
`cost` it reports; a failed task counts nothing.

Every answer here is a `Reply` (status, headers, body): the HTTP layer only copies it out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import limits
from .limits import RequestRate
from .rules import REFUSAL_MESSAGE, PromptRules
from .store import CODE_PREFIX, ClassInfo, Store, Student
from .upstream import Answer, Upstream, UpstreamUnreachable

__all__ = ["Proxy", "Reply", "error_reply", "HubUnavailable"]

log = logging.getLogger("qwen_widgets.gateway")

TASK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,191}$")
MAX_IMAGES = 6
ANONYMOUS_PER_MINUTE = 120
"""Requests a minute from one address to the public pricing endpoint (no code needed there)."""


class HubUnavailable(Exception):
    """JupyterHub could not be asked who a token belongs to."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer to a student."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def error_reply(status: int, message: str, kind: str, *, code: Any = None, param: str | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
    """The API's error envelope: `{"error": {"code", "message", "type", "param"?}}`."""
    error: dict[str, Any] = {"code": status if code is None else code, "message": message, "type": kind}
    if param is not None:
        error["param"] = param
    return Reply.json(status, {"error": error}, headers)


def _not_found(what: str) -> Reply:
    return error_reply(404, f"{what} not found", "not_found")


def _task_id_of(body: Any) -> str | None:
    """The task id in a submit answer, in either of its two shapes (docs/api-contract.md sections 1.4, 1.5)."""
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return None
    for name in ("id", "task_id"):
        if isinstance(data.get(name), str) and TASK_ID.match(data[name]):
            return data[name]
    return None


def _images_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """[{urls, expires_at}] of a completed task; `url` may be a string or a list of them."""
    result = data.get("result")
    images = result.get("images") if isinstance(result, dict) else None
    found = []
    for image in images if isinstance(images, list) else []:
        if not isinstance(image, dict):
            continue
        url = image.get("url")
        urls = ([url] if isinstance(url, str) else [u for u in url if isinstance(u, str)] if isinstance(url, list)
                else [])
        if urls:
            expires = image.get("expires_at")
            found.append({"urls": urls, "expires_at": expires if isinstance(expires, (int, float)) else None})
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


class Proxy:
    """The gateway's rules between students and the provider. Used from one event loop."""

    def __init__(self, store: Store, upstream: Upstream, *, clock: Callable[[], float],
                 hub: Any = None, hub_class: str | None = None):
        self.store = store
        self.upstream = upstream
        self.clock = clock
        self.hub = hub
        """Resolves a JupyterHub token to a user name (hub.HubIdentity), in Hub mode."""
        self.hub_class = hub_class
        self.rate = RequestRate(clock)

    # -- who is asking ----------------------------------------------------------------------------

    async def identify(self, authorization: str | None) -> Student | Reply:
        """The student behind an `Authorization: Bearer ...` header, or the 401 to answer."""
        scheme, _, credential = (authorization or "").strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() not in ("bearer", "token") or not credential:
            return error_reply(401, "send your class code as the API key (Authorization: Bearer <code>)",
                               "authentication_error")
        student: Student | None = None
        if credential.startswith(CODE_PREFIX):
            student = self.store.student_for_code(credential)
        elif self.hub is not None and self.hub_class is not None:
            try:
                user = await self.hub.user_for(credential)
            except HubUnavailable as exc:
                return error_reply(502, f"the gateway could not ask JupyterHub who you are ({exc}); try again",
                                   "upstream_error")
            if user is not None:
                student = self.store.hub_student(self.hub_class, user)
        if student is None:
            return error_reply(401, "this class code is not known: check it, or ask your teacher for yours",
                               "authentication_error")
        if student.revoked:
            return error_reply(401, "this class code was revoked by your teacher; ask them for a new one",
                               "authentication_error")
        return student

    def too_fast(self, student: Student, info: ClassInfo) -> Reply | None:
        """The 429 for a student over their class's request rate, or None."""
        wait = self.rate.wait(("student", student.id), info.requests_per_minute)
        if wait is None:
            return None
        return error_reply(429, f"too many requests from your code: at most {info.requests_per_minute} a minute; "
                                f"wait {wait} s", "rate_limit_error", headers={"Retry-After": str(wait)})

    def too_fast_anonymous(self, address: str) -> Reply | None:
        wait = self.rate.wait(("address", address), ANONYMOUS_PER_MINUTE)
        if wait is None:
            return None
        return error_reply(429, f"too many requests: wait {wait} s", "rate_limit_error",
                           headers={"Retry-After": str(wait)})

    # -- the answers ------------------------------------------------------------------------------

    def _relay(self, answer: Answer, public_base: str) -> Reply:
        return Reply(answer.status, self.upstream.public(answer.body, public_base), answer.headers)

    def _unreachable(self, exc: UpstreamUnreachable, *, submit: bool) -> Reply:
        status = 504 if exc.timed_out else 502
        message = f"the gateway got no answer from the image service: {exc}"
        if submit:
            message += ("; the task may exist: send the same request again with the same Idempotency-Key "
                        "(nothing is counted twice)")
        return error_reply(status, message, "upstream_error")

    async def submit(self, student: Student, info: ClassInfo, headers: Mapping[str, str], body: bytes,
                     public_base: str) -> Reply:
        """`POST /v1/images/generations`."""
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            return error_reply(400, "the request body must be a JSON object", "invalid_request_error")
        n = request.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
            return error_reply(400, f"n must be a whole number from 1 to {MAX_IMAGES}", "invalid_request_error",
                               param="n")
        prompt, model = request.get("prompt"), request.get("model")
        if not isinstance(prompt, str) or not prompt.strip():
            return error_reply(400, "prompt is required: a non-empty string", "invalid_request_error", param="prompt")
        if not isinstance(model, str) or not model:
            return error_reply(400, "model is required: a model id such as qwen-image-2.0", "invalid_request_error",
                               param="model")
        key = headers.get("idempotency-key")
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            return error_reply(400, "Idempotency-Key must be 1-191 visible ASCII characters", "invalid_request_error",
                               param="Idempotency-Key")
        digest = hashlib.sha256(body).hexdigest()
        # asked before the ledger is read, so nothing awaits between the budget check and the reservation
        price = info.price_per_image if info.price_per_image is not None else await self.upstream.price(model)

        existing = self.store.submission_for_key(student, key) if key is not None else None
        if existing is not None and existing.state == "refused":
            self.store.forget(existing.id)
            existing = None
        if existing is not None:
            if existing.digest != digest:
                return error_reply(422, "this Idempotency-Key was used with a different request body",
                                   "invalid_request_error", code="idempotency_key_reused")
            if existing.answer is not None:
                return Reply(200, self.upstream.public(existing.answer.encode(), public_base),
                             {"Content-Type": "application/json", "idempotency-replayed": "true"})
            submission_id, new = existing.id, False
        else:
            refusal = self._refusal(student, info, request, n, price, public_base)
            if refusal is not None:
                return refusal
            submission_id, new = self.store.reserve(student, key=key, digest=digest, n=n, price=price,
                                                    request=request, now=self.clock()), True

        sent = {"Content-Type": "application/json"}
        if key is not None:
            # one namespace per student: two students' keys never meet at the provider
            sent["Idempotency-Key"] = "qwg-" + hashlib.sha256(f"{student.id}:{key}".encode()).hexdigest()
        if "x-apimart-response-version" in headers:
            sent["X-APIMart-Response-Version"] = headers["x-apimart-response-version"]
        try:
            answer = await self.upstream.send("POST", "/v1/images/generations", headers=sent,
                                              body=self._private_body(request, body, public_base))
        except UpstreamUnreachable as exc:
            log.warning("submit from %s (%s): no answer from the provider: %s", student.name, student.class_name, exc)
            return self._unreachable(exc, submit=True)

        parsed = answer.json()
        if 200 <= answer.status < 300:
            task_id = _task_id_of(parsed)
            if task_id is not None:
                self.store.attach(submission_id, task_id, answer.body.decode("utf-8", "replace"))
                data = parsed.get("data")
                if isinstance(data, dict) and data.get("status") in ("completed", "failed", "cancelled"):
                    self._settle(submission_id, data, price, student)
            return self._relay(answer, public_base)
        refused = 400 <= answer.status < 500 or answer.status == 503
        if refused and new:
            self.store.release(submission_id)
        if answer.status == 401:
            # the student's code was fine: it is the gateway's own key the provider refused
            log.error("the provider refused the gateway's API key (HTTP 401): check APIMART_API_KEY")
            self.store.log_event(student.class_name, student.name, "gateway key",
                                 "the image service refused the gateway's API key (HTTP 401)")
            return error_reply(403, "the image service refused the gateway's own key; nothing was made: "
                                    "tell your teacher", "permission_error", code="gateway_key_refused")
        return self._relay(answer, public_base)

    def _refusal(self, student: Student, info: ClassInfo, request: dict[str, Any], n: int,
                 price: float | None, public_base: str) -> Reply | None:
        """Why a new submission may not go (prompt rule, another's image, window, budget), or None."""
        rule = PromptRules(info.rules).first_match(request["prompt"])
        if rule is not None:
            self.store.log_event(student.class_name, student.name, "prompt rule",
                                 f"rule {rule!r} matched the prompt {request['prompt'][:300]!r}")
            return error_reply(400, REFUSAL_MESSAGE, "invalid_request_error", code="prompt_rule", param="prompt")
        urls = request.get("image_urls")
        for index, url in enumerate(urls if isinstance(urls, list) else []):
            if isinstance(url, str):
                owner = self.store.media_owner(self.upstream.private(url, public_base))
                if owner is not None and owner != student.id:
                    return error_reply(400, f"image_urls[{index}] is not one of your uploads; upload your own copy",
                                       "invalid_request_error", param="image_urls")
        now = self.clock()
        refusal = limits.check(info.policy, self.store.usage(student, now), n, price, now)
        if refusal is None:
            return None
        self.store.log_event(student.class_name, student.name,
                             "window" if refusal.code == "outside_window" else "budget",
                             refusal.message)
        log.info("refused a submit from %s (%s): %s", student.name, student.class_name, refusal.message)
        return Reply.json(403, refusal.envelope())

    def _private_body(self, request: dict[str, Any], body: bytes, public_base: str) -> bytes:
        """The body to send: as the student sent it, unless it names images by the gateway's address."""
        urls = request.get("image_urls")
        if not self.upstream.simulated_mode or not isinstance(urls, list):
            return body
        private = [self.upstream.private(url, public_base) if isinstance(url, str) else url for url in urls]
        if private == urls:
            return body
        return json.dumps({**request, "image_urls": private}).encode()

    def _settle(self, submission_id: int, data: dict[str, Any], price: float | None, student: Student) -> None:
        if data.get("status") != "completed":
            self.store.settle(submission_id, completed=False, images=0, cost=0.0, result=[])
            return
        images = _images_of(data)
        cost = _number(data.get("cost"))
        if cost is None and price is not None:
            cost = round(len(images) * price, 6)
        self.store.settle(submission_id, completed=True, images=len(images), cost=cost, result=images)
        self.store.add_media(student, [url for image in images for url in image["urls"]])

    async def task(self, student: Student, task_id: str, language: str | None, public_base: str) -> Reply:
        """`GET /v1/tasks/{id}`: only the student's own tasks exist for them."""
        if not TASK_ID.match(task_id):
            return _not_found("task")
        submission = self.store.submission_for_task(student, task_id)
        if submission is None:
            return _not_found(f"task {task_id}")
        target = f"/v1/tasks/{task_id}"
        if language in ("en", "zh", "ko", "ja"):
            target += f"?language={language}"
        try:
            answer = await self.upstream.send("GET", target)
        except UpstreamUnreachable as exc:
            return self._unreachable(exc, submit=False)
        parsed = answer.json()
        data = parsed.get("data") if isinstance(parsed, dict) else None
        if (answer.status == 200 and isinstance(data, dict)
                and data.get("status") in ("completed", "failed", "cancelled")):
            self._settle(submission.id, data, submission.price, student)
        return self._relay(answer, public_base)

    async def upload(self, student: Student, content_type: str, body: bytes, public_base: str) -> Reply:
        """`POST /v1/uploads/images`: passed on as it came; the URL is remembered as the student's."""
        if not content_type.lower().startswith("multipart/form-data"):
            return error_reply(400, "send multipart/form-data with one field 'file'", "invalid_request_error")
        try:
            answer = await self.upstream.send("POST", "/v1/uploads/images", headers={"Content-Type": content_type},
                                              body=body)
        except UpstreamUnreachable as exc:
            return self._unreachable(exc, submit=False)
        parsed = answer.json()
        if answer.status == 200 and isinstance(parsed, dict) and isinstance(parsed.get("url"), str):
            self.store.add_media(student, [parsed["url"]])
        return self._relay(answer, public_base)

    def balance(self, student: Student, info: ClassInfo) -> Reply:
        """`GET /v1/balance`: what is left for this student today, in images."""
        now = self.clock()
        answer = limits.balance(info.policy, self.store.usage(student, now), now)
        return Reply.json(200, {**answer, "class": info.name, "student": student.name})

    def class_balance(self, student: Student, info: ClassInfo) -> Reply:
        """`GET /v1/user/balance`: the class's images today (never the provider account's money)."""
        now = self.clock()
        answer = limits.balance(info.policy, self.store.usage(student, now), now)
        class_limits = [item for item in answer["limits"] if item["scope"] == "class"]
        left = min(item["left"] for item in class_limits if item["limit"] != "spend per day")
        used = next(item["used"] for item in class_limits if item["limit"] == "images per day")
        return Reply.json(200, {"success": True, "remain_balance": left, "used_balance": used, "unlimited_quota": False,
                                "unit": "images", "scope": "class", "class": info.name, "limits": class_limits})

    async def forward(self, target: str, public_base: str, *, with_key: bool = True) -> Reply:
        """A read-only call passed on as it is (models, schema, docs, pricing)."""
        try:
            answer = await self.upstream.send("GET", target, with_key=with_key)
        except UpstreamUnreachable as exc:
            return self._unreachable(exc, submit=False)
        return self._relay(answer, public_base)

    async def media(self, target: str) -> Reply:
        """A simulator image or upload at the gateway's address: only one the gateway handed out."""
        if self.upstream.rewrite_from is None or self.store.media_owner(self.upstream.rewrite_from + target) is None:
            return Reply(404, b"Not Found", {"Content-Type": "text/plain"})
        try:
            answer = await self.upstream.send("GET", target, with_key=False)
        except UpstreamUnreachable as exc:
            return self._unreachable(exc, submit=False)
        return Reply(answer.status, answer.body, answer.headers)
