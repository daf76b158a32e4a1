"""The gateway's commands: `python -m qwen_widgets.gateway serve|add-class|revoke|...`.

`add_subparsers(subparsers)` registers the same commands on any argparse parser, so the
package's `qwen-widgets gateway ...` console script mounts them without a second copy, and
`run(args)` runs the parsed command with the same one-line errors. Every
command takes `--data DIR`. An error is one line that names the option and the rule it
breaks (exit status 2), never a traceback. Codes are printed once, at the moment they are
made; the data folder keeps only their hashes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from . import INSTALL_HINT
from .folder import DataFolder, FolderInUse
from .store import FieldError, Store

__all__ = ["main", "add_subparsers", "build_parser", "run"]

PROG = "python -m qwen_widgets.gateway"
DEFAULT_PORT = 8765


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line, not the usage block and then the line."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Failure(Exception):
    """A command's one-line error, naming the option or argument it is about."""


def _option(field: str) -> str:
    """How a store's field is spelt on the command line."""
    return {"name": "NAME", "class": "CLASS", "student": "STUDENT"}.get(field, f"--{field}")


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="the gateway's data folder (classes, codes, usage, the teacher token)")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_subparsers(subparsers: Any) -> None:
    """Register serve, add-class, revoke, new-code, list, show and rules on `subparsers`."""
    hub_url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    serve = subparsers.add_parser("serve", help="run the gateway", description=(
        "Run the gateway. With APIMART_API_KEY in its environment it forwards to APIMART_BASE_URL "
        "(default https://api.apimart.ai); without, to the built-in simulator."))
    serve.add_argument("--port", type=int, default=hub_url.port or DEFAULT_PORT,
                       help=f"port to listen on (default {hub_url.port or DEFAULT_PORT}; 0: any free port)")
    serve.add_argument("--host", default=hub_url.hostname or "127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--hub-class", metavar="CLASS",
                       help="JupyterHub mode: Hub users are students of CLASS (run as a Hub service)")
    serve.add_argument("--prefix", default=None,
                       help="URL prefix (default: $JUPYTERHUB_SERVICE_PREFIX when run as a Hub service, else /)")
    _data_option(serve)
    serve.set_defaults(run=_serve, parser=serve)

    add = subparsers.add_parser("add-class", help="create a class and print one code per student",
                                description="Create a class and print one code per student (shown once).")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--students", type=int, required=True, help="how many codes to make (student-1..N)")
    add.add_argument("--images-per-day", type=int, required=True, help="images per student per UTC day")
    add.add_argument("--class-images-per-day", type=int,
                     help="images per UTC day for the whole class (default: students x images-per-day)")
    add.add_argument("--spend-per-day", type=float, help="what the class may spend per UTC day (account's unit)")
    add.add_argument("--price-per-image", type=float,
                     help="price used to reserve spend (default: the provider's pricing endpoint)")
    add.add_argument("--window", metavar="HH:MM-HH:MM", help="when the class may generate, in UTC, e.g. 10:00-11:00")
    add.add_argument("--total-images", type=int, help="images over the class's whole life")
    add.add_argument("--requests-per-minute", type=int, default=120, help="per student (default 120)")
    add.add_argument("--rule", action="append", default=[], metavar="RULE",
                     help="a prompt rule: a word or phrase, or re:REGEX (repeat for more)")
    _data_option(add)
    _json_option(add)
    add.set_defaults(run=_add_class, parser=add)

    revoke = subparsers.add_parser("revoke", help="revoke one student's code")
    revoke.add_argument("class_name", metavar="CLASS")
    revoke.add_argument("student", metavar="STUDENT", help="e.g. student-3 (or a Hub user name)")
    _data_option(revoke)
    revoke.set_defaults(run=_revoke, parser=revoke)

    new_code = subparsers.add_parser("new-code", help="give a student a new code (the old one stops working)")
    new_code.add_argument("class_name", metavar="CLASS")
    new_code.add_argument("student", metavar="STUDENT")
    _data_option(new_code)
    _json_option(new_code)
    new_code.set_defaults(run=_new_code, parser=new_code)

    listing = subparsers.add_parser("list", help="classes with today's use")
    _data_option(listing)
    _json_option(listing)
    listing.set_defaults(run=_list, parser=listing)

    show = subparsers.add_parser("show", help="one class: its students' use, its rules")
    show.add_argument("class_name", metavar="CLASS")
    _data_option(show)
    _json_option(show)
    show.set_defaults(run=_show, parser=show)

    rules = subparsers.add_parser("rules", help="show or change a class's prompt rules")
    rules.add_argument("class_name", metavar="CLASS")
    rules.add_argument("--add", action="append", default=[], metavar="RULE")
    rules.add_argument("--remove", action="append", default=[], metavar="RULE")
    _data_option(rules)
    rules.set_defaults(run=_rules, parser=rules)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Class mode: one API key on a gateway, capped codes for students.")
    add_subparsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run a command parsed by a parser that `add_subparsers` filled; its exit status."""
    try:
        return args.run(args)
    except FieldError as exc:
        message = f"{_option(exc.field)}: {exc.rule}"
    except _Failure as exc:
        message = str(exc)
    print(f"{args.parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _existing_store(args: argparse.Namespace) -> Store:
    folder = DataFolder(args.data)
    if not folder.database.exists():
        raise _Failure(f"--data: no gateway data in {folder.path} (make a class first with add-class)")
    return Store(folder.database)


def _serve(args: argparse.Namespace) -> int:
    try:
        import tornado  # noqa: F401
    except ImportError:
        raise _Failure(INSTALL_HINT) from None
    prefix = args.prefix
    if args.hub_class is not None:
        try:
            import jupyterhub  # noqa: F401

            from .hub import hub_environment_ready
        except ImportError:
            raise _Failure("--hub-class: JupyterHub mode needs jupyterhub: pip install jupyterhub") from None
        missing = hub_environment_ready()
        if missing is not None:
            raise _Failure(f"--hub-class: JupyterHub mode runs as a Hub service, which sets {missing}; it is not set")
    if prefix is None:  # as a Hub service, the Hub's proxy sends it everything under this prefix
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    from .server import GatewayServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key = os.environ.get("APIMART_API_KEY", "").strip() or None
    try:
        server = GatewayServer(args.data, host=args.host, port=args.port, api_key=key,
                               base_url=os.environ.get("APIMART_BASE_URL") or None,
                               hub_class=args.hub_class, prefix=prefix)
    except FolderInUse as exc:
        raise _Failure(f"--data: {exc}") from None
    except FieldError as exc:
        raise _Failure(f"--hub-class: {exc.rule}") from None
    except OSError as exc:
        raise _Failure(f"--port: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    with server:
        # before the banner: whoever reads "Ctrl-C stops." may send SIGTERM at once
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"Class gateway at {server.url} (data: {server.folder.path})", flush=True)
        print(f"  images from: {server.mode}", flush=True)
        if key is None and os.environ.get("APIMART_BASE_URL"):
            print("  (APIMART_BASE_URL is set but APIMART_API_KEY is not: the simulator is used)", flush=True)
        if args.hub_class is not None:
            print(f"  JupyterHub mode: Hub users are students of {args.hub_class}", flush=True)
        print(f"  students set: APIMART_BASE_URL={server.url} APIMART_API_KEY=<their code>", flush=True)
        print(f"  teacher page (keep this link private): {server.teacher_url}", flush=True)
        print("  Ctrl-C stops.", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _add_class(args: argparse.Namespace) -> int:
    folder = DataFolder(args.data).create()
    with Store(folder.database) as store:
        codes = store.add_class(
            args.name, students=args.students, images_per_day=args.images_per_day,
            class_images_per_day=args.class_images_per_day, spend_per_day=args.spend_per_day,
            total_images=args.total_images, window=args.window, price_per_image=args.price_per_image,
            requests_per_minute=args.requests_per_minute, rules=args.rule)
        info = store.class_info(args.name)
    if args.json:
        print(json.dumps({"class": args.name, "codes": [{"name": name, "code": code} for name, code in codes]}))
        return 0
    policy = info.policy
    extras = [f"window {policy.window} UTC" if policy.window else "",
              f"{policy.spend_per_day:g} to spend per day" if policy.spend_per_day is not None else "",
              f"{policy.total_images} images in total" if policy.total_images is not None else "",
              f"{len(info.rules)} prompt rule{'s' if len(info.rules) != 1 else ''}" if info.rules else ""]
    print(f"Class {args.name}: {len(codes)} students, {policy.images_per_day} images each per day "
          f"(class: {policy.class_images_per_day} per day)" + "".join(f", {e}" for e in extras if e) + ".")
    if codes:
        print("Codes (shown once; the gateway keeps only a hash):")
        width = max(len(name) for name, _ in codes)
        for name, code in codes:
            print(f"  {name:<{width}}  {code}")
    print("Each student sets APIMART_BASE_URL to the gateway's address and APIMART_API_KEY to their code.")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with _existing_store(args) as store:
        done = store.revoke(args.class_name, args.student)
    print(f"{args.student} of {args.class_name}: " + ("revoked; their code no longer works." if done
                                                      else "was already revoked."))
    return 0


def _new_code(args: argparse.Namespace) -> int:
    with _existing_store(args) as store:
        code = store.reissue(args.class_name, args.student)
    if args.json:
        print(json.dumps({"class": args.class_name, "codes": [{"name": args.student, "code": code}]}))
    else:
        print(f"New code for {args.student} of {args.class_name} (shown once; the old one no longer works):")
        print(f"  {code}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _existing_store(args) as store:
        rows = []
        for name in store.class_names():
            info, totals = store.class_info(name), store.totals(name)
            students = store.students(name)
            rows.append({"class": name, "students": sum(not s["revoked"] for s in students),
                         "revoked": sum(s["revoked"] for s in students),
                         "images_today": totals["images_today"],
                         "class_images_per_day": info.policy.class_images_per_day,
                         "cost_today": round(totals["spend_today"], 6),
                         "window": str(info.policy.window) if info.policy.window else None})
    if args.json:
        print(json.dumps({"classes": rows}))
        return 0
    if not rows:
        print("No classes yet (add-class makes one).")
    for row in rows:
        revoked = f" (+{row['revoked']} revoked)" if row["revoked"] else ""
        window = f", window {row['window']} UTC" if row["window"] else ""
        print(f"{row['class']}: {row['students']} students{revoked}, {row['images_today']:g} of "
              f"{row['class_images_per_day']} images today, cost today {row['cost_today']:g}{window}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _existing_store(args) as store:
        info = store.class_info(args.class_name)
        students = store.students(args.class_name)
    if args.json:
        print(json.dumps({"class": info.name, "rules": list(info.rules), "students": [
            {key: s[key] for key in ("name", "revoked", "hub_user", "images_today", "spend_today", "images_total",
                                     "spend_total")} for s in students]}))
        return 0
    print(f"{info.name}: {info.policy.images_per_day} images per student per day, "
          f"{info.policy.class_images_per_day} per day for the class")
    for s in students:
        state = "revoked" if s["revoked"] else "active"
        print(f"  {s['name']:<16} {state:<8} today {s['images_today']:g} images, cost {s['spend_today']:g}; "
              f"all time {s['images_total']:g} images")
    print("Prompt rules: " + (", ".join(info.rules) if info.rules else "none"))
    return 0


def _rules(args: argparse.Namespace) -> int:
    with _existing_store(args) as store:
        rules = list(store.class_info(args.class_name).rules)
        missing = [rule for rule in args.remove if rule not in rules]
        if missing:
            raise _Failure(f"--remove: {missing[0]!r} is not one of the class's rules")
        if args.add or args.remove:
            rules = store.set_rules(args.class_name, [r for r in rules if r not in args.remove] + args.add)
    print(f"Prompt rules of {args.class_name}: " + (", ".join(rules) if rules else "none"))
    return 0

