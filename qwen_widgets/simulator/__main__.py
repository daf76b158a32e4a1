"""`python -m qwen_widgets.simulator --port 8000`: serve the simulated API on loopback."""

from __future__ import annotations

import argparse
import dataclasses
import time

from . import DEFAULT_MODELS, Simulator, serve
from ._contract import CODE_STYLES

__all__ = ["main", "parse_arguments", "simulator_from"]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m qwen_widgets.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every duration")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--url-style", choices=("string", "list", "mixed"), default="list")
    parser.add_argument("--url-lifetime", type=float, default=86_400.0, help="seconds")
    parser.add_argument("--whole-seconds", action=argparse.BooleanOptionalAction, default=None,
                        help="estimated_time and actual_time in whole seconds (default: when --time-scale >= 1)")
    parser.add_argument("--error-codes", choices=CODE_STYLES, default="recorded")
    parser.add_argument("--balance-unit", default="USD", help="the unit balances are reported in")
    parser.add_argument("--model", action="append", default=[], metavar="ID[=PRICE]",
                        help="offer this model too, with qwen-image-2.0's rules (repeatable)")
    return parser.parse_args(argv)


def simulator_from(args: argparse.Namespace) -> Simulator:
    """The simulator the command line asks for."""
    models = dict(DEFAULT_MODELS)
    standard = DEFAULT_MODELS["qwen-image-2.0"]
    for offer in args.model:
        name, _, price = offer.partition("=")
        models[name] = dataclasses.replace(standard, price=float(price) if price else standard.price,
                                           description="")
    return Simulator(
        seed=args.seed,
        time_scale=args.time_scale,
        failure_rate=args.failure_rate,
        rate_limit=args.rate_limit,
        url_style=args.url_style,
        url_lifetime=args.url_lifetime,
        whole_seconds=args.whole_seconds,
        error_codes=args.error_codes,
        balance_unit=args.balance_unit,
        models=models,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    with serve(simulator_from(args), host=args.host, port=args.port) as server:
        print(f"Simulated Qwen-Image API at {server.url} (any bearer key). Ctrl-C stops.", flush=True)
        print(f"  APIMART_BASE_URL={server.url} APIMART_API_KEY=anything", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
