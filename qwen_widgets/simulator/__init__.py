"""The offline simulator of APIMart's Qwen-Image API: its own contract, one core, two adapters.

- `CONTRACT` (and the constants of `qwen_widgets.simulator._contract`): the API's rules as the
  simulator states them, from the vendor's page, for comparison with the client's.
- `Simulator`: the deterministic state machine (validation, envelopes, task lifecycle, faults);
  it offers the models given as `SimModel`s, by default `DEFAULT_MODELS`.
- `SimulatorTransport`: in-process httpx transport, used by demo mode.
- `serve()` / `python -m qwen_widgets.simulator --port 8000`: a real loopback HTTP server.
"""

from ._contract import CONTRACT, DEFAULT_MODELS, SimModel
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
    "SimModel",
    "DEFAULT_MODELS",
    "CONTRACT",
]
