"""The gateway as an HTTP server: tornado handlers around the proxy, and the process that runs them.

Why tornado: it is already installed wherever Jupyter is (the gateway adds no dependency to a
teacher's machine or a Hub), JupyterHub's `HubOAuth` helpers are tornado handlers, and its
event loop forwards many slow requests at once with httpx's async client. The handlers here
only translate HTTP to `Proxy` calls and back; the rules live in `proxy.py`.

Limits on what a request may carry are checked before its body is read: the student is
identified first (a stranger never makes the gateway read 20 MB), then JSON bodies are capped
at 64 KB and uploads at 20 MB plus the multipart envelope.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from .folder import DataFolder
from .proxy import Proxy, Reply, error_reply
from .store import Store
from .teacher import TEMPLATES, teacher_routes
from .upstream import DEFAULT_BASE_URL, Upstream

__all__ = ["GatewayServer", "Context"]

log = logging.getLogger("qwen_widgets.gateway")

MAX_JSON_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 20 * 2**20 + 64 * 1024
"""The provider's 20 MB per image, plus room for the multipart boundaries and headers."""
MAX_DRAINED_BYTES = 64 * 2**20
"""A body declared larger than this is not even read to be refused: the connection is closed."""
LOGGERS = ("qwen_widgets.gateway", "tornado.access", "tornado.application", "tornado.general", "httpx",
           # httpcore's debug traces print the provider's response headers, which may echo the key
           "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks")
"""Every logger that sees the gateway's traffic; a filter on each masks the key (a logger's
filters apply only to records made on that very logger, so each is named)."""


class Context:
    """What every handler needs: the store, the proxy, the teacher's token, the address prefix."""

    def __init__(self, store: Store, proxy: Proxy, upstream: Upstream, *, token: str, prefix: str,
                 clock: Callable[[], float], hub: Any = None):
        self.store = store
        self.proxy = proxy
        self.upstream = upstream
        self.token = token
        self.prefix = prefix
        self.clock = clock
        self.hub = hub

    def secret(self, purpose: str) -> str:
        """A value derived from the teacher token (the session cookie, the CSRF field)."""
        return hmac.new(self.token.encode(), purpose.encode(), "sha256").hexdigest()


class _Masking(logging.Filter):
    """Hides the real key in every record of the gateway's loggers, tracebacks included."""

    def __init__(self, upstream: Upstream):
        super().__init__()
        self.upstream = upstream

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.upstream.mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info:
            record.exc_text = self.upstream.mask_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class ApiHandler(tornado.web.RequestHandler):
    """Base of the API handlers: answers in the API's error envelope, never in HTML."""

    def initialize(self, context: Context) -> None:
        self.context = context

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")

    @property
    def public_base(self) -> str:
        """This gateway's address as the request reached it (for the simulator's image URLs)."""
        return f"{self.request.protocol}://{self.request.host}{self.context.prefix.rstrip('/')}"

    def send_reply(self, reply: Reply) -> None:
        self.set_status(reply.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        self.finish(reply.body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.clear()
        self.set_default_headers()
        kind = "server_error" if status_code >= 500 else "invalid_request_error"
        reply = error_reply(status_code, self._reason if status_code < 500 else
                            "the gateway failed on this request; its log says why", kind)
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(reply.body)

    async def authenticate(self) -> bool:
        """Identify the student and apply their rate; False when an answer was already sent."""
        proxy = self.context.proxy
        found = await proxy.identify(self.request.headers.get("Authorization"))
        if isinstance(found, Reply):
            self.send_reply(found)
            return False
        info = self.context.store.class_info(found.class_name)  # a student's class always exists
        limited = proxy.too_fast(found, info)
        if limited is not None:
            self.send_reply(limited)
            return False
        self.student, self.info = found, info
        return True


@tornado.web.stream_request_body
class BodyHandler(ApiHandler):
    """A POST whose body is read only after the student is known, and only up to a cap."""

    max_body = MAX_JSON_BYTES

    async def prepare(self) -> None:
        self.chunks: list[bytes] = []
        self.received = 0
        if not await self.authenticate():
            return
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_DRAINED_BYTES:
            self.send_reply(self._too_large())
            return
        # read (and drop) a too-large body up to MAX_DRAINED_BYTES, so the client gets the 413
        self.request.connection.set_max_body_size(MAX_DRAINED_BYTES)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received <= self.max_body:
            self.chunks.append(chunk)
        else:
            self.chunks = []

    def _too_large(self) -> Reply:
        limit = f"{self.max_body // 2**20} MB" if self.max_body >= 2**20 else f"{self.max_body // 1024} KB"
        return error_reply(413, f"the request body is over the gateway's limit of {limit}", "invalid_request_error")

    def body(self) -> bytes | None:
        """The whole body, or None after answering 413."""
        if self.received > self.max_body:
            self.send_reply(self._too_large())
            return None
        return b"".join(self.chunks)


class Generations(BodyHandler):
    async def post(self) -> None:
        body = self.body()
        if body is not None:
            headers = {name.lower(): value for name, value in self.request.headers.get_all()}
            self.send_reply(await self.context.proxy.submit(self.student, self.info, headers, body, self.public_base))


class Uploads(BodyHandler):
    max_body = MAX_UPLOAD_BYTES

    async def post(self) -> None:
        body = self.body()
        if body is not None:
            content_type = self.request.headers.get("Content-Type", "")
            self.send_reply(await self.context.proxy.upload(self.student, content_type, body, self.public_base))


class Tasks(ApiHandler):
    async def get(self, task_id: str) -> None:
        if await self.authenticate():
            language = self.get_query_argument("language", None)
            self.send_reply(await self.context.proxy.task(self.student, task_id, language, self.public_base))


class Balance(ApiHandler):
    async def get(self) -> None:
        if await self.authenticate():
            self.send_reply(self.context.proxy.balance(self.student, self.info))


class ClassBalance(ApiHandler):
    async def get(self) -> None:
        if await self.authenticate():
            self.send_reply(self.context.proxy.class_balance(self.student, self.info))


class Catalogue(ApiHandler):
    """Models, the request schema and the model docs: passed on with the real key."""

    async def get(self, *_: str) -> None:
        if await self.authenticate():
            self.send_reply(await self.context.proxy.forward(self._target(), self.public_base))

    def _target(self) -> str:
        path = self.request.path[len(self.context.prefix.rstrip("/")):]
        return path + (f"?{self.request.query}" if self.request.query else "")


class Pricing(Catalogue):
    """The provider's public pricing: no code needed, and no key sent."""

    async def get(self, *_: str) -> None:
        limited = self.context.proxy.too_fast_anonymous(self.request.remote_ip or "")
        if limited is not None:
            self.send_reply(limited)
            return
        self.send_reply(await self.context.proxy.forward(self._target(), self.public_base, with_key=False))


class Media(Catalogue):
    """Simulator images and uploads at the gateway's address (demo mode); no code needed,
    like the provider's signed URLs, but only the exact URLs the gateway handed out."""

    async def get(self, *_: str) -> None:
        reply = await self.context.proxy.media(self._target())
        self.send_reply(reply)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")


class NotFound(ApiHandler):
    def prepare(self) -> None:
        self.send_reply(error_reply(404, f"no route for {self.request.method} {self.request.path[:100]}", "not_found"))


class Home(tornado.web.RequestHandler):
    """What someone who opens the gateway's address in a browser reads."""

    def initialize(self, context: Context) -> None:
        self.context = context

    def get(self) -> None:
        base = f"{self.request.protocol}://{self.request.host}{self.context.prefix.rstrip('/')}"
        self.render("home.html", base=base, prefix=self.context.prefix)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # the path only: a query string may hold the teacher token or an OAuth code
    request = handler.request
    status = handler.get_status()
    # a 4xx is the gateway doing its job (a budget, a wrong code): not worth a warning in a notebook
    level = logging.INFO if status < 500 else logging.ERROR
    logging.getLogger("tornado.access").log(level, "%d %s %s %.0fms", status, request.method,
                                            request.path, 1000.0 * request.request_time())


def make_app(context: Context) -> tornado.web.Application:
    prefix = context.prefix
    v1 = prefix + "v1/"
    routes: list[Any] = [
        (prefix, Home),
        (v1 + "images/generations", Generations),
        (v1 + "uploads/images", Uploads),
        (v1 + r"tasks/([^/]+)", Tasks),
        (v1 + "balance", Balance),
        (v1 + "user/balance", ClassBalance),
        (v1 + "models", Catalogue),
        (v1 + r"models/([^/]+)", Catalogue),
        (v1 + "model-schema", Catalogue),
        (v1 + "model-docs", Catalogue),
        (prefix + "api/pricing/model", Pricing),
        (prefix + r"(sim-images|sim-uploads)/.*", Media),
    ]
    routes = [(pattern, handler, {"context": context}) for pattern, handler in routes]
    routes += teacher_routes(context)
    return tornado.web.Application(
        routes,
        default_handler_class=NotFound, default_handler_args={"context": context},
        template_loader=TEMPLATES, log_function=_log_request, xheaders=True,
        cookie_secret=os.urandom(32).hex(),  # Hub sign-in's state cookie; a restart signs in again
    )


class GatewayServer:
    """A running gateway: `url`, `teacher_url`; `close()` (or use it as a context manager).

    It serves from a thread of its own, so a notebook cell or a test can start it and go on.
    `api_key=None` fronts the built-in simulator (or the given `simulator`).
    """

    def __init__(self, data: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, base_url: str | None = None, simulator: Any = None,
                 clock: Callable[[], float] = time.time, hub_class: str | None = None,
                 prefix: str = "/"):
        self.folder = DataFolder(data).create()
        self.folder.lock()
        try:
            self._start(host, port, api_key, base_url, simulator, clock, hub_class, prefix)
        except BaseException:
            self.folder.unlock()
            raise

    def _start(self, host: str, port: int, api_key: str | None, base_url: str | None, simulator: Any,
               clock: Callable[[], float], hub_class: str | None, prefix: str) -> None:
        self.token, self.token_is_new = self.folder.teacher_token()
        self.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        if hub_class is not None:
            with Store(self.folder.database, clock=clock) as store:
                store.class_info(hub_class)  # FieldError naming the class when it does not exist
        hub = None
        if hub_class is not None:
            from .hub import HubIdentity

            hub = HubIdentity()
        if api_key:
            self.upstream = Upstream(base_url or DEFAULT_BASE_URL, api_key)
        else:
            self.upstream = Upstream.simulated(simulator)
        self._masking = _Masking(self.upstream)
        for name in LOGGERS:
            logging.getLogger(name).addFilter(self._masking)
        sockets = tornado.netutil.bind_sockets(port, address=host)
        self.host, self.port = host, sockets[0].getsockname()[1]
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{self.port}{self.prefix.rstrip('/')}"
        self.teacher_url = f"{self.url}/teacher?token={self.token}"
        self.mode = self.upstream.describe()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                store = Store(self.folder.database, clock=clock)
                proxy = Proxy(store, self.upstream, clock=clock, hub=hub, hub_class=hub_class)
                context = Context(store, proxy, self.upstream, token=self.token, prefix=self.prefix,
                                  clock=clock, hub=hub)
                server = tornado.httpserver.HTTPServer(make_app(context), xheaders=True,
                                                       max_body_size=MAX_DRAINED_BYTES)
                server.add_sockets(sockets)
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.stop()
                loop.run_until_complete(self.upstream.aclose())
                store.close()
                loop.close()

        self._thread = threading.Thread(target=serve, name="qwen_widgets-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self.upstream.close()
            raise failure[0]

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.upstream.close()
        for name in LOGGERS:
            logging.getLogger(name).removeFilter(self._masking)
        self.folder.unlock()

    def __enter__(self) -> GatewayServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GatewayServer(url={self.url!r}, data={str(self.folder.path)!r})"

