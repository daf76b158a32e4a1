"""The simulated API as a state machine: requests in, responses out, no sockets.

Each task's whole life (queue time, duration, the server's overstated estimate, whether it
fails, how many images it returns) is drawn when it is created from a generator seeded by
(seed, task number), so runs are reproducible whatever the timing. Its state at any moment
is computed from the clock, so nothing runs in the background.

The rules it enforces are its own statement of the contract (`_contract`), never the
client's, so a loopback test can catch a client that misreads the API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import _catalog as catalog
from ._contract import (
    CODE_STYLES,
    DEFAULT_MODELS,
    Refusal,
    SimModel,
    SimRequest,
    check_submission,
    error_body,
    ignored_fields,
)
from ._life import SimTask
from ._responses import Fault, SimResponse, bearer, error_response, json_response
from ._uploads import UPLOAD_ROUTE, Uploads

__all__ = ["Simulator", "SIMULATOR_BASE_URL"]

SIMULATOR_BASE_URL = "https://simulator.qwen-widgets.invalid"
IMAGE_ROUTE = "/sim-images/"
SUBMIT_ROUTE = "/v1/images/generations"
IGNORED_HEADER = "X-Simulator-Ignored-Fields"
"""Names the submit body's fields the simulator ignored, comma-separated (absent when none)."""


@dataclasses.dataclass(frozen=True)
class Call:
    """One keyed request, as an endpoint sees it."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    key_id: str
    """Which key made it (a digest: the key itself is never kept)."""

    def param(self, name: str) -> str:
        return _param(self.query, name)


class Simulator:
    """A deterministic model of APIMart's Qwen-Image endpoints.

    Durations are in real seconds before `time_scale` shrinks them (0.01: a 20 s task takes
    0.2 s). `rate_limit` is requests per second per key over a sliding second; requests
    above it get 429 with Retry-After. Submits honour `Idempotency-Key` and answer in the
    versioned shape when `X-APIMart-Response-Version` is sent (docs/api-contract.md sections 1.5 and 3); completed
    tasks report their `cost`. `api_keys`, when given, are the only keys accepted;
    otherwise any bearer key is. Task lives follow `seed`, but task ids are new in every
    instance, like the real service's; two instances with the same `task_id_seed` issue the
    same ids (a restarted server that reissues them).

    Defaults follow live recordings (docs/api-contract.md sections 7.1 and 7.7): `estimated_time` and `actual_time` in
    whole seconds, `url` a list of strings, error codes as recorded (a word such as
    `model_not_found` where one was recorded, else the HTTP status; a failed task's code is a
    number, as the clients' types decode it). The variants stay selectable:

    - `whole_seconds`: None (default) reports whole seconds when `time_scale` >= 1 and
      keeps fractions (to the millisecond) below it, where a 0.2 s task would otherwise
      report 0 or 1 s and mislead a client's poll schedule; True or False forces either.
    - `url_style`: "list" (default), "string", or "mixed" (each task picks one).
    - `error_codes`: "recorded" (default), "string" or "numeric" (see `CODE_STYLES`).

    Submit bodies are checked against the model they name (`models`, by default the two
    documented ones; a test may offer others with their own rules and prices). Fields the
    contract does not model (e.g. `quality`, `output_format`, `background`, `seed`) are
    accepted and ignored, never refused: each submit's log entry lists them under
    `ignored_fields`, and the answer names them in `X-Simulator-Ignored-Fields`. A known
    field with a wrong type or value is refused with the API's 400 envelope naming `param`;
    an unknown model answers 503 `model_not_found`.

    Balances: `starting_balance` is the account's (`GET /v1/user/balance`); a key
    (`GET /v1/balance`) reports its own use, and as remaining its own `key_quota` less that
    use, or the account's remainder when keys have no quota of their own (None). Both
    report `balance_unit` as `unit`. `balance_failures` ({"key": message} and/or
    {"account": message}) makes that answer a 200 with `success: false`.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        duration: float = 20.0,
        duration_spread: float = 0.3,
        estimate_factor: tuple[float, float] = (1.5, 3.5),
        failure_rate: float = 0.0,
        short_result_rate: float = 0.0,
        server_error_rate: float = 0.0,
        rate_limit: float | None = None,
        url_style: str = "list",
        url_lifetime: float = 86_400.0,
        image_base_url: str | None = None,
        api_keys: set[str] | None = None,
        task_id_seed: str | None = None,
        synchronous_results: bool = False,
        progress_style: str = "linear",
        max_running: int | None = None,
        starting_balance: float = 10.0,
        key_quota: float | None = None,
        balance_unit: str = "USD",
        balance_failures: Mapping[str, str] | None = None,
        models: Mapping[str, SimModel] | None = None,
        whole_seconds: bool | None = None,
        error_codes: str = "recorded",
        clock: Callable[[], float] = time.time,
    ):
        if url_style not in ("string", "list", "mixed"):
            raise ValueError("url_style must be 'string', 'list' or 'mixed'")
        if progress_style not in ("linear", "coarse", "none"):
            raise ValueError("progress_style must be 'linear', 'coarse' or 'none'")
        if error_codes not in CODE_STYLES:
            raise ValueError(f"error_codes must be one of {', '.join(CODE_STYLES)}")
        if not set(balance_failures or {}) <= {"key", "account"}:
            raise ValueError("balance_failures is keyed by 'key' and/or 'account'")
        self.models: dict[str, SimModel] = dict(DEFAULT_MODELS if models is None else models)
        """Model id -> its rules and price: what every endpoint offers and checks against."""
        if not self.models or not all(isinstance(m, SimModel) for m in self.models.values()):
            raise ValueError("models must map at least one model id to a SimModel")
        self.progress_style = progress_style
        self.max_running = max_running
        """Tasks that may run at once; a submit beyond it gets 429 'too_many_tasks'."""
        self.seed = seed
        self.time_scale = time_scale
        self.duration = duration
        self.duration_spread = duration_spread
        self.estimate_factor = estimate_factor
        self.failure_rate = failure_rate
        self.short_result_rate = short_result_rate
        self.server_error_rate = server_error_rate
        self.rate_limit = rate_limit
        self.url_style = url_style
        self.url_lifetime = url_lifetime
        self.image_base_url = image_base_url
        self.api_keys = api_keys
        # ids are never seen before, unless a test asks for a server that reissues them
        self.task_id_seed = task_id_seed if task_id_seed is not None else secrets.token_hex(8)
        self._signature = secrets.token_hex(8)
        self.synchronous_results = synchronous_results
        """Answer versioned submits with the finished task inline (`generation.result`)."""
        self.starting_balance = starting_balance
        self.key_quota = key_quota
        self.balance_unit = balance_unit
        self.balance_failures = dict(balance_failures or {})
        self.whole_seconds = whole_seconds
        self.error_codes = error_codes
        self.uploads = Uploads()
        """Images uploaded for use as references, in memory."""
        self.idempotency: dict[str, tuple[str, str]] = {}
        """Idempotency key -> (body digest, task id) of the submission that used it first."""
        self.clock = clock
        self.faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        """Every request handled: method, path, status, whether it carried Authorization, its
        Idempotency-Key, and for a submit the body's `ignored_fields`."""
        self.tasks: dict[str, SimTask] = {}
        self._noise = random.Random(f"{seed}:noise")
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.RLock()

    @classmethod
    def for_demo(cls) -> Simulator:
        """The simulator behind demo mode: tasks of about 5 s, so a demo feels alive."""
        return cls(time_scale=0.25)

    def __repr__(self) -> str:
        return f"Simulator(seed={self.seed}, time_scale={self.time_scale:g}, tasks={len(self.tasks)})"

    # -- scripted faults and introspection ------------------------------------------------------

    def inject(self, response: SimResponse | None = None, *, delay: float = 0.0,
               method: str | None = None, count: int = 1, path_prefix: str = "/v1/",
               process: bool = False) -> None:
        """Misbehave for the next `count` requests that match.

        With a `response`, answer with it instead (after handling the request for real when
        `process`). Without one, give the real answer `delay` seconds late.
        """
        if response is None:
            response, process = SimResponse(delay=delay, action="late"), True
        with self._lock:
            self.faults.append(Fault(response, method, path_prefix, count, process))

    def count(self, method: str, path_prefix: str = "/v1/") -> int:
        """How many requests of `method` under `path_prefix` were received."""
        with self._lock:
            return sum(1 for e in self.log if e["method"] == method and e["path"].startswith(path_prefix))

    def completion_time(self, task_id: str) -> float:
        """Clock time at which the task is (or will be) finished on the server."""
        task = self.tasks[task_id]
        end = task.fail_at if task.fail_at is not None else task.duration
        return task.created + end

    # -- the HTTP surface ---------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> SimResponse:
        """Answer one HTTP request. `target` is the path with its query string."""
        parts = urlsplit(target)
        path = parts.path
        headers = {k.lower(): v for k, v in headers.items()}
        response = self._locked_handle(method, path, parts.query, headers, body)
        if response.action == "render":  # outside the lock: a 2K render takes a while
            from ._render import render_placeholder

            prompt, index, width, height, reference = json.loads(response.body)
            png = render_placeholder(prompt, index, width, height,
                                     self.uploads.bytes_of(reference) if reference else None)
            return SimResponse(200, {"Content-Type": "image/png", "Cache-Control": "max-age=86400"}, png)
        return response

    def _locked_handle(self, method: str, path: str, query: str, headers: dict, body: bytes) -> SimResponse:
        with self._lock:
            entry = {"method": method, "path": path, "authorization": "authorization" in headers,
                     "time": self.clock(), "idempotency_key": headers.get("idempotency-key")}
            self.log.append(entry)
            fault = self._take_fault(method, path)
            if fault is not None and not fault.process:
                entry["status"] = fault.response.action or fault.response.status
                return fault.response
            response = self._route(method, path, parse_qs(query), headers, body)
            entry["status"] = response.status
            if method == "POST" and path == SUBMIT_ROUTE:
                named = response.headers.get(IGNORED_HEADER, "")
                entry["ignored_fields"] = [name for name in named.split(", ") if name]
            if fault is None:
                return response
            if fault.response.action == "late":
                return dataclasses.replace(response, delay=fault.response.delay)
            return fault.response

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        try:
            return self._answer(method, path, query, headers, body)
        except Refusal as refusal:
            return error_response(refusal, self.error_codes)

    def _answer(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        public = self._public(method, path, query)
        if public is not None:
            return public
        endpoint = self._endpoint(method, path)
        if endpoint is None:
            raise Refusal(404, f"no route for {method} {path}", "not_found")
        key = bearer(headers.get("authorization", ""))
        if not key or (self.api_keys is not None and key not in self.api_keys):
            raise Refusal(401, "Invalid or missing API key. Send Authorization: Bearer <key>.", "authentication_error")
        limited = self._rate_limited(key)
        if limited is not None:
            return limited
        if self.server_error_rate and self._noise.random() < self.server_error_rate:
            raise Refusal(500, "internal server error", "server_error")
        return endpoint(Call(path, query, headers, body, _key_id(key)))

    def _public(self, method: str, path: str, query: dict) -> SimResponse | None:
        """The answers that need no key: images, uploads, docs pages, pricing, marketplace."""
        if method != "GET":
            return None
        if path.startswith(IMAGE_ROUTE):
            return self._image(path)
        if path.startswith(UPLOAD_ROUTE):
            found = self.uploads.serve(path)
            if found is None:
                return SimResponse(404, {"Content-Type": "text/plain"}, b"Not Found")
            return SimResponse(200, {"Content-Type": found[1]}, found[0])
        if path.startswith(catalog.DOCS_ROUTE):
            name = path[len(catalog.DOCS_ROUTE):].removesuffix(".md")
            if name not in self.models:
                return SimResponse(404, {"Content-Type": "text/plain"}, b"Not Found")
            text = catalog.markdown(name, self.models[name]).encode()
            return SimResponse(200, {"Content-Type": "text/markdown; charset=utf-8"}, text)
        if path == "/api/pricing/model":
            name = _param(query, "model")
            return json_response(200, catalog.pricing(name, self.models.get(name)))
        if path == "/api/marketplace/models":
            page = _whole(_param(query, "page"), 1, 1, 10_000)
            page_size = _whole(_param(query, "page_size"), 50, 1, 100)
            return json_response(200, catalog.marketplace(self.models, _param(query, "type"), page, page_size,
                                                          self._base()))
        return None

    def _endpoint(self, method: str, path: str) -> Callable[[Call], SimResponse] | None:
        if method == "POST":
            return {SUBMIT_ROUTE: self._submit, "/v1/uploads/images": self._upload}.get(path)
        if method != "GET":
            return None
        if path.startswith("/v1/tasks/"):
            return self._task
        if path.startswith("/v1/models/"):
            return self._model
        return {"/v1/models": self._models, "/v1/model-schema": self._model_schema,
                "/v1/model-docs": self._model_docs, "/v1/balance": self._key_balance,
                "/v1/user/balance": self._account_balance}.get(path)

    def _base(self) -> str:
        return self.image_base_url or SIMULATOR_BASE_URL

    # -- uploads, catalogue and account ---------------------------------------------------------

    def _upload(self, call: Call) -> SimResponse:
        return json_response(200, self.uploads.accept(call.body, call.headers.get("content-type", ""),
                                                      self._base(), self.clock()))

    def _offered(self, name: str, status: int = 404) -> SimModel:
        model = self.models.get(name)
        if model is None:
            raise Refusal(status, f"model {name[:64]!r} not found: this service offers {', '.join(self.models)}",
                          "invalid_request_error", code="model_not_found", param="model")
        return model

    def _models(self, call: Call) -> SimResponse:
        return json_response(200, catalog.models(self.models))

    def _model(self, call: Call) -> SimResponse:
        name = call.path[len("/v1/models/"):]
        return json_response(200, catalog.model_card(name, self._offered(name)))

    def _model_schema(self, call: Call) -> SimResponse:
        name, operation = call.param("model"), call.param("operation") or catalog.OPERATION
        model = self._offered(name)
        if operation != catalog.OPERATION:
            raise Refusal(404, f"model {name[:64]!r} offers no operation {operation[:64]!r}; it offers "
                               f"{catalog.OPERATION}", "not_found", param="operation")
        return json_response(200, catalog.model_schema(name, model))

    def _model_docs(self, call: Call) -> SimResponse:
        name = call.param("model")
        if not name:
            raise Refusal(400, "model: is required", param="model")
        return json_response(200, catalog.model_docs(name, self._offered(name), self._base(), self.clock()))

    def _account_balance(self, call: Call) -> SimResponse:
        if "account" in self.balance_failures:
            return json_response(200, catalog.balance_failure(self.balance_failures["account"]))
        used = self._spent()
        return json_response(200, catalog.balance(self.starting_balance - used, used, self.balance_unit))

    def _key_balance(self, call: Call) -> SimResponse:
        if "key" in self.balance_failures:
            return json_response(200, catalog.balance_failure(self.balance_failures["key"]))
        used = self._spent(call.key_id)
        remaining = self.starting_balance - self._spent() if self.key_quota is None else self.key_quota - used
        return json_response(200, catalog.balance(remaining, used, self.balance_unit))

    def _spent(self, key_id: str | None = None) -> float:
        """What completed tasks cost, all of them or one key's."""
        now = self.clock()
        return sum(self._cost(task) for task in self.tasks.values()
                   if key_id in (None, task.key_id) and task.state(now)[0] == "completed")

    def _running(self) -> int:
        now = self.clock()
        return sum(task.state(now)[0] in ("pending", "processing") for task in self.tasks.values())

    def _cost(self, task: SimTask) -> float:
        return round(self.models[task.request.model].price * task.images_returned, 6)

    def _rate_limited(self, key: str) -> SimResponse | None:
        if self.rate_limit is None:
            return None
        now = self.clock()
        window = self._recent.setdefault(key, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            wait = max(1, math.ceil(window[0] + 1.0 - now))
            return error_response(Refusal(429, "Too many requests, please slow down.", "rate_limit_error"),
                                  self.error_codes, {"Retry-After": str(wait)})
        window.append(now)
        return None

    # -- generation -----------------------------------------------------------------------------

    def _submit(self, call: Call) -> SimResponse:
        try:
            payload = json.loads(call.body or b"null")
        except ValueError:
            raise Refusal(400, "body: is not valid JSON", param="body") from None
        ignored = ignored_fields(payload)
        noted = {IGNORED_HEADER: ", ".join(ignored)} if ignored else {}
        try:
            request = check_submission(payload, self.models)
        except Refusal as refusal:
            return error_response(refusal, self.error_codes, noted)
        key = call.headers.get("idempotency-key")
        digest = hashlib.sha256(call.body).hexdigest()
        if key is not None and key in self.idempotency:
            first_digest, task_id = self.idempotency[key]
            if first_digest != digest:
                raise Refusal(422, "this Idempotency-Key was used with a different request body",
                              code="idempotency_key_reused")
            return self._accepted(self.tasks[task_id], call.headers, {**noted, "idempotency-replayed": "true"})
        if self.max_running is not None and self._running() >= self.max_running:
            return error_response(Refusal(429, "too many tasks running, try again shortly", "rate_limit_error",
                                          code="too_many_tasks"), self.error_codes, {"Retry-After": "1"})
        task = self._new_task(request, call.key_id)
        if self.synchronous_results and "x-apimart-response-version" in call.headers:
            task.queue = task.duration = 0.0
            task.fail_at = None
        self.tasks[task.task_id] = task
        if key is not None:
            self.idempotency[key] = (digest, task.task_id)
        return self._accepted(task, call.headers, noted)

    def _accepted(self, task: SimTask, headers: dict, extra: dict[str, str]) -> SimResponse:
        """The submit answer: versioned when the client asked for it, legacy otherwise."""
        if "x-apimart-response-version" not in headers:
            return json_response(200, {"code": 200, "data": [{"status": "submitted", "task_id": task.task_id}]}, extra)
        request_id = f"req_{secrets.token_hex(8)}"
        if task.duration == 0.0:
            data = {**self._task_data(task, self.clock()), "object": "generation.result"}
        else:
            data = {"id": task.task_id, "status": "pending", "object": "generation.task",
                    "created": int(task.created)}
        return json_response(200, {"code": 200, "request_id": request_id, "data": data}, extra)

    def _new_task(self, request: SimRequest, key_id: str) -> SimTask:
        number = len(self.tasks)
        rng = random.Random(f"{self.seed}:{number}")
        digest = hashlib.sha256(f"{self.task_id_seed}:{number}".encode()).hexdigest().upper()
        task_id = f"task_01SIM{digest[:15]}{number:05d}"
        real = self.duration * math.exp(rng.gauss(0.0, self.duration_spread))
        estimate = max(1, round(real * rng.uniform(*self.estimate_factor)))
        duration = real * self.time_scale
        fails = rng.random() < self.failure_rate
        returned = request.n
        if request.n > 1 and rng.random() < self.short_result_rate:
            returned = rng.randint(0, request.n - 1)
        return SimTask(
            task_id=task_id,
            request=request,
            key_id=key_id,
            created=self.clock(),
            queue=duration * rng.uniform(0.03, 0.15),
            duration=duration,
            estimate=estimate * self.time_scale,
            fail_at=duration * rng.uniform(0.3, 0.9) if fails else None,
            images_returned=returned,
            url_as_list=self.url_style == "list" or (self.url_style == "mixed" and rng.random() < 0.5),
            error="content moderation rejected the prompt" if rng.random() < 0.5
            else "generation failed, please retry",
            progress_style=self.progress_style,
        )

    def _task(self, call: Call) -> SimResponse:
        task_id = call.path[len("/v1/tasks/"):]
        task = self.tasks.get(task_id)
        now = self.clock()
        if task is None or now - task.created > 86_400 * self.time_scale:
            raise Refusal(404, f"task {task_id[:64]} not found", "not_found")
        return json_response(200, {"code": 200, "data": self._task_data(task, now)})

    def _task_data(self, task: SimTask, now: float) -> dict[str, Any]:
        status, progress = task.state(now)
        data: dict[str, Any] = {
            "id": task.task_id,
            "status": status,
            "progress": progress,
            "estimated_time": self._seconds(task.estimate),
            "created": int(task.created),
        }
        if status == "completed":
            data["actual_time"] = self._seconds(task.duration)
            data["completed"] = int(task.created + task.duration)
            data["result"] = {"images": self._images_of(task)}
            data["cost"] = self._cost(task)
        elif status == "failed":
            # no word of its own: a failed task's code is a number, as the clients' types decode it
            data["error"] = error_body(500, task.error, "generation_failed", style=self.error_codes)["error"]
        return data

    def _seconds(self, seconds: float) -> int | float:
        """A duration as the answer states it: whole seconds (at least 1), or milliseconds."""
        whole = self.time_scale >= 1 if self.whole_seconds is None else self.whole_seconds
        return max(1, round(seconds)) if whole else round(seconds, 3)

    def _images_of(self, task: SimTask) -> list[dict[str, Any]]:
        expires = int(task.created + task.duration + self.url_lifetime)
        # signed like real result URLs: unique to this server even for a reissued task id
        urls = [f"{self._base()}{IMAGE_ROUTE}{task.task_id}/{i}.png?expires={expires}&sig={self._signature}"
                for i in range(task.images_returned)]
        if task.url_as_list:
            return [{"url": [url], "expires_at": expires} for url in urls]
        return [{"url": url, "expires_at": expires} for url in urls]

    def _image(self, path: str) -> SimResponse:
        task_id, _, name = path[len(IMAGE_ROUTE):].partition("/")
        task = self.tasks.get(task_id)
        index = name.removesuffix(".png")
        if task is None or not index.isdigit() or int(index) >= task.images_returned \
                or task.state(self.clock())[0] != "completed":
            return SimResponse(404, {"Content-Type": "text/plain"}, b"Not Found")
        if self.clock() > task.created + task.duration + self.url_lifetime:
            return SimResponse(403, {"Content-Type": "application/xml"},
                               b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        width, height = task.request.output_size
        reference = next((url for url in task.request.image_urls if self.uploads.bytes_of(url)), None)
        order = json.dumps([task.request.prompt, int(index), width, height, reference]).encode()
        return SimResponse(200, body=order, action="render")


def _key_id(key: str) -> str:
    """A key's stand-in in the simulator's records: the key itself is never kept."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _param(query: dict, name: str) -> str:
    return query.get(name, [""])[0]


def _whole(text: str, default: int, lowest: int, highest: int) -> int:
    """A page number or size from the query string, within bounds; the default when absent."""
    try:
        return min(max(int(text), lowest), highest)
    except ValueError:
        return default
