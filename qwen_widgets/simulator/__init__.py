"""The offline simulator of the Qwen-Image 2.0 API: one core, two adapters.

- `Simulator`: the deterministic state machine (validation, envelopes, task lifecycle, faults).
- `SimulatorTransport`: in-process httpx transport, used by demo mode.
- `serve()` / `python -m qwen_widgets.simulator --port 8000`: a real loopback HTTP server.
"""

from ._core import SIMULATOR_BASE_URL, Simulator
from ._responses import Fault, SimResponse
from ._server import SimulatorServer, serve
from ._transport import SimulatorTransport

__all__ = [
    "Simulator",
    "SimResponse",
    "Fault",
    "SimulatorTransport",
    "SimulatorServer",
    "serve",
    "SIMULATOR_BASE_URL",
]
