"""Loopback adapter: the Simulator behind a real HTTP/1.1 server, for tests and benchmarks."""

from __future__ import annotations

import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._core import Simulator

__all__ = ["SimulatorServer", "serve"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real service
    disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK (40 ms)
    server: _HTTPServer

    def _handle(self) -> None:
        simulator = self.server.simulator
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = simulator.handle(self.command, self.path, dict(self.headers.items()), body)
        if answer.delay:
            time.sleep(answer.delay)
        if answer.action in ("drop", "refuse"):
            self._reset()
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def _reset(self) -> None:
        """Close with a TCP RST, as a crashed proxy would: the client sees a reset."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:  # the socket was reset on purpose
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], simulator: Simulator):
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and clients that hang up are part of the tests


class SimulatorServer:
    """A running loopback server; `url` is its base URL. Use as a context manager."""

    def __init__(self, simulator: Simulator | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, image_host: str | None = None):
        self.simulator = simulator or Simulator()
        self._http = _HTTPServer((host, port), self.simulator)
        self.host, self.port = host, self._http.server_address[1]
        self.url = f"http://{host}:{self.port}"
        if self.simulator.image_base_url is None:
            self.simulator.image_base_url = f"http://{image_host or host}:{self.port}"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="qwen_widgets-simulator", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimulatorServer(url={self.url!r})"


def serve(simulator: Simulator | None = None, **options: Any) -> SimulatorServer:
    """Start the simulator on loopback: `with serve() as server: ... server.url ...`."""
    return SimulatorServer(simulator, **options)
