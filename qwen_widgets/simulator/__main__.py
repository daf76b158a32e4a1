"""`python -m qwen_widgets.simulator --port 8000`: serve the simulated API on loopback."""

from __future__ import annotations

import argparse
import time

from . import Simulator, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qwen_widgets.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every duration")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--url-style", choices=("string", "list", "mixed"), default="mixed")
    parser.add_argument("--url-lifetime", type=float, default=86_400.0, help="seconds")
    args = parser.parse_args(argv)
    simulator = Simulator(
        seed=args.seed,
        time_scale=args.time_scale,
        failure_rate=args.failure_rate,
        rate_limit=args.rate_limit,
        url_style=args.url_style,
        url_lifetime=args.url_lifetime,
    )
    with serve(simulator, host=args.host, port=args.port) as server:
        print(f"Simulated Qwen-Image API at {server.url} (any bearer key). Ctrl-C stops.", flush=True)
        print(f"  APIMART_BASE_URL={server.url} APIMART_API_KEY=anything", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
