"""The simulated API as a state machine: requests in, responses out, no sockets.

Each task's whole life (queue time, duration, the server's overstated estimate, whether it
fails, how many images it returns) is drawn when it is created from a generator seeded by
(seed, task number), so runs are reproducible whatever the timing. Its state at any moment
is computed from the clock, so nothing runs in the background.
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
from typing import Any
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from ..model.errors import RequestValidationError
from ..model.request import MODELS, ImageRequest
from . import _catalog as catalog
from ._life import SimTask
from ._uploads import UPLOAD_ROUTE, Uploads
from ._responses import Fault, SimResponse, bearer, error_response, json_response

__all__ = ["Simulator", "SIMULATOR_BASE_URL"]

SIMULATOR_BASE_URL = "https://simulator.qwen-widgets.invalid"
IMAGE_ROUTE = "/sim-images/"


class Simulator:
    """A deterministic model of APIMart's Qwen-Image 2.0 endpoints.

    Durations are in real seconds before `time_scale` shrinks them (0.01: a 20 s task takes
    0.2 s). `rate_limit` is requests per second per key over a sliding second; requests
    above it get 429 with Retry-After. Submits honour `Idempotency-Key` and answer in the
    versioned shape when `X-APIMart-Response-Version` is sent (API.md section 5); completed
    tasks report their `cost`. `api_keys`, when given, are the only keys accepted;
    otherwise any bearer key is. Task lives follow `seed`, but task ids are new in every
    instance, like the real service's; two instances with the same `task_id_seed` issue the
    same ids (a restarted server that reissues them).
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
        url_style: str = "mixed",
        url_lifetime: float = 86_400.0,
        image_base_url: str | None = None,
        api_keys: set[str] | None = None,
        task_id_seed: str | None = None,
        synchronous_results: bool = False,
        progress_style: str = "linear",
        max_running: int | None = None,
        starting_balance: float = 10.0,
        clock: Callable[[], float] = time.time,
    ):
        if url_style not in ("string", "list", "mixed"):
            raise ValueError("url_style must be 'string', 'list' or 'mixed'")
        if progress_style not in ("linear", "coarse", "none"):
            raise ValueError("progress_style must be 'linear', 'coarse' or 'none'")
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
        self.uploads = Uploads()
        """Images uploaded for use as references, in memory."""
        self.idempotency: dict[str, tuple[str, str]] = {}
        """Idempotency key -> (body digest, task id) of the submission that used it first."""
        self.clock = clock
        self.faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        """Every request handled: method, path, status, whether it carried Authorization, and
        its Idempotency-Key."""
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
        if path.startswith(IMAGE_ROUTE) and method == "GET":
            return self._image(path, query)
        if path.startswith(UPLOAD_ROUTE) and method == "GET":
            found = self.uploads.serve(path)
            if found is None:
                return SimResponse(404, {"Content-Type": "text/plain"}, b"Not Found")
            return SimResponse(200, {"Content-Type": found[1]}, found[0])
        if path == "/api/pricing/model" and method == "GET":  # public: no key needed
            model = query.get("model", [""])[0]
            if model not in catalog.PRICES:
                return error_response(404, f"no price for model {model[:64]!r}", "not_found")
            return json_response(200, {"success": True, "data": {"model": model, "price_per_image": catalog.PRICES[model],
                                                                 "currency": "USD"}})
        endpoint = self._endpoint(method, path)
        if endpoint is None:
            return error_response(404, f"no route for {method} {path}", "not_found")
        key = bearer(headers.get("authorization", ""))
        if not key or (self.api_keys is not None and key not in self.api_keys):
            return error_response(401, "Invalid or missing API key. Send Authorization: Bearer <key>.",
                          "authentication_error")
        limited = self._rate_limited(key)
        if limited is not None:
            return limited
        if self.server_error_rate and self._noise.random() < self.server_error_rate:
            return error_response(500, "internal server error", "server_error")
        return endpoint(path, query, headers, body)

    def _endpoint(self, method: str, path: str) -> Callable[..., SimResponse] | None:
        if method == "POST":
            return {"/v1/images/generations": self._submit, "/v1/uploads/images": self._upload}.get(path)
        if method != "GET":
            return None
        if path.startswith("/v1/tasks/"):
            return self._task
        return {"/v1/models": self._models, "/v1/model-schema": self._model_schema,
                "/v1/balance": self._balance}.get(path)

    def _upload(self, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        base = self.image_base_url or SIMULATOR_BASE_URL
        status, answer = self.uploads.accept(body, headers.get("content-type", ""), base, self.clock())
        return json_response(status, answer)

    def _models(self, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        return json_response(200, catalog.models())

    def _model_schema(self, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        model, operation = query.get("model", [""])[0], query.get("operation", ["image_generation"])[0]
        schema = catalog.model_schema(model, operation)
        if schema is None:
            return error_response(404, f"no schema for model {model[:64]!r} and operation {operation[:64]!r}",
                          "not_found", code="model_not_found")
        return json_response(200, schema)

    def _balance(self, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        now = self.clock()
        spent = sum(self._cost(task) for task in self.tasks.values() if task.state(now)[0] == "completed")
        return json_response(200, catalog.balance(self.starting_balance, spent))

    def _running(self) -> int:
        now = self.clock()
        return sum(task.state(now)[0] in ("pending", "processing") for task in self.tasks.values())

    @staticmethod
    def _cost(task: SimTask) -> float:
        return round(catalog.PRICES[task.request.model] * task.images_returned, 6)

    def _rate_limited(self, key: str) -> SimResponse | None:
        if self.rate_limit is None:
            return None
        now = self.clock()
        window = self._recent.setdefault(key, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            wait = max(1, math.ceil(window[0] + 1.0 - now))
            return error_response(429, "Too many requests, please slow down.", "rate_limit_error",
                          headers={"Retry-After": str(wait)})
        window.append(now)
        return None

    def _submit(self, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return error_response(400, "request body is not valid JSON", "invalid_request_error")
        if isinstance(payload, dict) and isinstance(payload.get("model"), str) and payload["model"] not in MODELS:
            # what the live service answers for an unknown model (API.md section 5)
            return error_response(503, f"model {payload['model'][:64]!r} not found", "invalid_request_error",
                          code="model_not_found", param="model")
        try:
            request = ImageRequest.from_payload(payload)
        except RequestValidationError as exc:
            return error_response(400, str(exc), "invalid_request_error", param=exc.field)
        key = headers.get("idempotency-key")
        digest = hashlib.sha256(body).hexdigest()
        if key is not None and key in self.idempotency:
            first_digest, task_id = self.idempotency[key]
            if first_digest != digest:
                return error_response(422, "this Idempotency-Key was used with a different request body",
                              "invalid_request_error", code="idempotency_key_reused")
            return self._accepted(self.tasks[task_id], headers, {"idempotency-replayed": "true"})
        if self.max_running is not None and self._running() >= self.max_running:
            return error_response(429, "too many tasks running, try again shortly", "rate_limit_error",
                                  code="too_many_tasks", headers={"Retry-After": "1"})
        task = self._new_task(request)
        if self.synchronous_results and "x-apimart-response-version" in headers:
            task.queue = task.duration = 0.0
            task.fail_at = None
        self.tasks[task.task_id] = task
        if key is not None:
            self.idempotency[key] = (digest, task.task_id)
        return self._accepted(task, headers, {})

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

    def _new_task(self, request: ImageRequest) -> SimTask:
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

    def _task(self, path: str, query: dict, headers: dict, body: bytes) -> SimResponse:
        task_id = path[len("/v1/tasks/"):]
        task = self.tasks.get(task_id)
        now = self.clock()
        if task is None or now - task.created > 86_400 * self.time_scale:
            return error_response(404, f"task {task_id[:64]} not found", "not_found")
        return json_response(200, {"code": 200, "data": self._task_data(task, now)})

    def _task_data(self, task: SimTask, now: float) -> dict[str, Any]:
        status, progress = task.state(now)
        data: dict[str, Any] = {
            "id": task.task_id,
            "status": status,
            "progress": progress,
            "estimated_time": task.estimate if self.time_scale != 1 else int(task.estimate),
            "created": int(task.created),
        }
        if status == "completed":
            data["actual_time"] = round(task.duration, 3)
            data["completed"] = int(task.created + task.duration)
            data["result"] = {"images": self._images_of(task)}
            data["cost"] = self._cost(task)
        elif status == "failed":
            data["error"] = {"code": "generation_failed", "message": task.error}
        return data

    def _images_of(self, task: SimTask) -> list[dict[str, Any]]:
        expires = int(task.created + task.duration + self.url_lifetime)
        base = self.image_base_url or SIMULATOR_BASE_URL
        # signed like real result URLs: unique to this server even for a reissued task id
        urls = [f"{base}{IMAGE_ROUTE}{task.task_id}/{i}.png?expires={expires}&sig={self._signature}"
                for i in range(task.images_returned)]
        if task.url_as_list:
            return [{"url": [url], "expires_at": expires} for url in urls]
        return [{"url": url, "expires_at": expires} for url in urls]

    def _image(self, path: str, query: dict) -> SimResponse:
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
