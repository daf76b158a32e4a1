"""The `qwen-widgets` command (also `python -m qwen_widgets`): the package from a shell.

    qwen-widgets generate "a red fox in snow" --size 16:9 -n 2 --out foxes
    qwen-widgets resume | history --since 7d | export | simulator --port 8000 | gateway serve ...

A shell user gets what a notebook user gets, with a shell's manners: every request field is
an option, a bad value is one line naming the option and its rule (exit status 2) before
anything is sent, never a traceback; progress goes to stderr and the saved files' paths to
stdout, so `qwen-widgets generate ... | xargs open` works. The simulator and the class
gateway keep their own command lines; they are mounted here, not copied. With no command
(or a prompt first) it generates, as `python -m qwen_widgets` always did.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._front import export, history
from ._version import __version__
from .engine.default import default_client
from .gateway import cli as gateway_cli
from .model.errors import (
    QwenError,
    RequestValidationError,
    SubmitOutcomeUnknownError,
    TaskTimeoutError,
)
from .model.history import when
from .model.request import MAX_IMAGES, MODELS, RESOLUTIONS, SIZES, ImageRequest, check_image_url
from .model.task import Task
from .store.home import home_path
from .store.journal import Journal

if TYPE_CHECKING:
    import pandas

__all__ = ["main"]

DEFAULT_PROMPT = "A cute orange cat napping in the sunshine"
COMMANDS = ("generate", "resume", "history", "export", "simulator", "gateway")
_OPTIONS = {"prompt": "PROMPT", "model": "--model", "size": "--size", "resolution": "--resolution",
            "n": "-n", "negative_prompt": "--negative", "image_urls": "--ref"}
_STATUSES = ("completed", "failed", "cancelled", "running", "submitted", "pending", "processing",
             "submitting", "unknown", "refused", "expired")
_TIME_FORMAT = "%Y-%m-%d %H:%M"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the option first, as the gateway's do:
    `qwen-widgets generate: error: -n: invalid int value: 'x'`, not the usage block."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^/:]+)(?:/[^:]+)?: ", r"\1: ", message)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Failure(Exception):
    """A command's one-line error; `status` 2 for a bad value, 1 for what went wrong after."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def main(argv: list[str] | None = None, *, prog: str = "qwen-widgets") -> int:
    """Run one command line; its exit status (0 done, 1 failed, 2 a bad value, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(prog)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help", "--version"):
        _refuse_a_typo(parser, argv)
        argv = ["generate", *argv]
    args, extra = parser.parse_known_args(argv)
    args.prog = prog
    if args.command == "simulator":  # its own parser reads its options
        return _simulator(extra)
    if extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "gateway":
        return gateway_cli.run(args)
    try:
        return int(args.run(args))
    except _Failure as failure:
        print(f"{args.parser.prog}: error: {failure}", file=sys.stderr)
        return failure.status
    except KeyboardInterrupt:
        print(f"{args.parser.prog}: interrupted", file=sys.stderr)
        return 130


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Generate images with Qwen-Image 2.0 (APIMart) from a shell; "
                                            "look through, resume and export the journal; run the "
                                            "simulator or a class gateway.",
                     epilog="Without APIMART_API_KEY everything runs against the built-in simulator. "
                            f"With no command, or a prompt first, it generates (`{prog} \"a fox\"`).")
    parser.add_argument("--version", action="version", version=f"qwen-widgets {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate images and save them to a folder",
                                   description="Generate images, show progress on stderr, save them "
                                               "(PNG plus JSON sidecar) and print their paths.")
    generate.add_argument("prompt", nargs="*", metavar="PROMPT",
                          help=f"what to draw, quoted or not (default: {DEFAULT_PROMPT!r})")
    generate.add_argument("--model", "-m", help=f"one of {', '.join(MODELS)} (default {MODELS[0]})")
    generate.add_argument("--size", "-s", default="16:9",
                          help=f"aspect ratio, one of {', '.join(SIZES)} (default 16:9)")
    generate.add_argument("--resolution", "-r", help=f"one of {', '.join(RESOLUTIONS)} (default 1K)")
    generate.add_argument("-n", type=_count, default=2, help=f"how many images, 1 to {MAX_IMAGES} (default 2)")
    generate.add_argument("--negative", metavar="TEXT", help="negative prompt: what to avoid")
    generate.add_argument("--ref", action="append", default=[], metavar="URL_OR_FILE",
                          help="a reference image: an http(s) URL, or a local file, which is uploaded "
                               "first (repeat for several)")
    generate.add_argument("--out", default="qwen_images", metavar="DIR",
                          help="folder for the images (default ./qwen_images)")
    generate.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                          help="stop watching after this long (the task may still finish: resume picks it up)")
    generate.set_defaults(run=_generate, parser=generate)

    resume = commands.add_parser("resume", help="finish what was left open (lost answers, unfinished tasks)",
                                 description="Finish what the journal left open in the last 24 hours: "
                                             "resend lost submissions with their key, watch unfinished "
                                             "tasks, keep their images.")
    resume.add_argument("--out", metavar="DIR", help="also save the finished tasks' images here")
    resume.set_defaults(run=_resume, parser=resume)

    listing = commands.add_parser("history", help="the journal as a table, newest first",
                                  description="Every journaled generation, newest first: one line "
                                              "per submission (--format csv or json: one row per "
                                              "image, every column of qw.history()).")
    _filters(listing)
    listing.add_argument("--limit", type=_count_or_all, default=20,
                         help="show the newest N (default 20; 0 for all); table only")
    listing.add_argument("--format", choices=("table", "csv", "json"), default="table")
    listing.set_defaults(run=_history, parser=listing)

    archive = commands.add_parser("export", help="one zip of the journal's images, sidecars and results.csv",
                                  description="One zip of the journaled tasks' images at full resolution, "
                                              "their JSON sidecars and results.csv.")
    archive.add_argument("path", nargs="?", default=".", metavar="PATH",
                         help="the zip to write, or a folder for a dated one (default: a dated zip here)")
    _filters(archive)
    archive.set_defaults(run=_export, parser=archive)

    commands.add_parser("simulator", add_help=False, help="serve the simulated API on loopback "
                        "(the options of python -m qwen_widgets.simulator; --help lists them)")

    gateway = commands.add_parser("gateway", help="class mode: one key on a gateway, capped codes for students",
                                  description="Class mode: one API key on a gateway, capped codes for students.")
    gateway_cli.add_subparsers(gateway.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND"))
    return parser


def _refuse_a_typo(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """`qwen-widgets hisotry` is a typo, not a prompt to pay for."""
    if len(argv) == 1 and " " not in argv[0]:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1, cutoff=0.75)
        if close:
            parser.error(f"unknown command {argv[0]!r} (did you mean {close[0]}?); "
                         f"to draw it, say {parser.prog} generate {argv[0]!r}")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--search", metavar="WORDS", help="only prompts or negative prompts holding these words")
    parser.add_argument("--starred", action="store_true", help="only starred generations")
    parser.add_argument("--since", type=_since, metavar="WHEN",
                        help="only those made since: 30m, 24h, 7d, 2w, or a date like 2026-11-30")
    parser.add_argument("--model", help="only this model's")
    parser.add_argument("--status", choices=_STATUSES, metavar="STATUS",
                        help=f"only tasks in this state: {', '.join(_STATUSES)}")


# -- values from the command line -------------------------------------------------------------


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_IMAGES} (got {text!r})") from None


def _count_or_all(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 for all (got {text!r})")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (got {text!r})")
    return value


def _since(text: str) -> str:
    """`--since` as given, once it is known to be a moment (qw.history reads the text itself)."""
    try:
        when("since", text, datetime.now(timezone.utc))
    except RequestValidationError:
        raise argparse.ArgumentTypeError(
            f"must be a duration like 30m, 24h, 7d, 2w or a date like 2026-11-30 (got {text!r})") from None
    return text


# -- generate and resume -------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    fields = {"model": args.model, "size": args.size, "resolution": args.resolution, "n": args.n,
              "negative_prompt": args.negative}
    fields = {name: value for name, value in fields.items() if value is not None}
    refs = list(args.ref)
    files = [Path(ref).expanduser().is_file() for ref in refs]
    with _field_errors(refs):  # every field checked before a client exists
        for index, (ref, is_file) in enumerate(zip(refs, files)):
            if not is_file and "://" not in ref and not ref.lower().startswith("data:"):
                raise _Failure(f"{_ref_option(index, refs)}: no such file: {ref} (a reference is an image "
                               "file or an http(s) URL)")  # a mistyped path is said as one
            if not is_file:
                check_image_url(index, ref)
        request = ImageRequest(prompt=" ".join(args.prompt) if args.prompt else DEFAULT_PROMPT, **fields)
    client = _client()
    for index, (ref, is_file) in enumerate(zip(refs, files)):
        if is_file:
            with _field_errors(refs, _ref_option(index, refs)):
                client.read_image(ref)  # its size and format checked before anything is sent
    width, height = request.output_size
    print(f"{_mode(client)}; {request.n} image(s) of {width}x{height} with {request.model}…", file=sys.stderr)
    progress = _Progress()
    try:
        with _field_errors(refs):
            task = client.generate(request, image_urls=refs or None, on_update=progress.update,
                                   timeout=args.timeout)
    except (TaskTimeoutError, SubmitOutcomeUnknownError) as error:
        progress.end()
        raise _Failure(f"{error} From a shell: {args.prog} resume", status=1) from None
    except QwenError as error:
        progress.end()
        raise _Failure(str(error), status=1) from None
    except KeyboardInterrupt:
        progress.end()
        if client.demo:
            print("Stopped (a simulated task ends with this process).", file=sys.stderr)
        elif progress.task_id:
            print(f"Stopped watching task {progress.task_id}; it may still finish and be billed "
                  f"({args.prog} resume picks it up).", file=sys.stderr)
        else:
            print("Interrupted before the server gave a task id; if the request arrived, "
                  f"{args.prog} resume sends it again with its key (never billed twice).", file=sys.stderr)
        return 130
    progress.end()
    paths = _save(client, [task], args.out)
    print(f"done in {progress.elapsed():.1f} s; {len(paths)} image(s) in {Path(args.out).resolve()}", file=sys.stderr)
    for path in paths:
        print(path.resolve())
    return 0


def _resume(args: argparse.Namespace) -> int:
    client = _client()
    if client.demo:
        waiting = _waiting_with_a_key()
        print(f"{_mode(client)}; a demo run's tasks end with its process, so none is left open."
              + (f" {waiting} task(s) from runs with a key wait for APIMART_API_KEY." if waiting else ""),
              file=sys.stderr)
        return 0
    progress = _Progress()
    try:
        tasks = client.resume(on_update=progress.update)
    except QwenError as error:
        progress.end()
        raise _Failure(str(error), status=1) from None
    progress.end()
    if not tasks:
        print("Nothing was left open.", file=sys.stderr)
    for task in tasks:
        print(f"{task.task_id}  {task.status.value}  {len(task.images)} image(s)"
              + (f"  {task.error}" if task.error else ""), file=sys.stderr)
    if args.out:
        for path in _save(client, [t for t in tasks if t.images], args.out):
            print(path.resolve())
    return 0


def _client() -> Any:
    try:
        return default_client(announce=False)  # the mode is said in this command's own line
    except RequestValidationError as error:  # a bad APIMART_API_KEY or APIMART_BASE_URL
        raise _Failure(str(error)) from None


def _mode(client: Any) -> str:
    return f"Simulated images: {client.demo_reason}" if client.demo else f"APIMart at {client.base_url}"


def _save(client: Any, tasks: list[Task], folder: str) -> list[Path]:
    try:
        return client.save(tasks, folder)
    except (OSError, QwenError) as error:
        raise _Failure(f"--out: cannot save into {folder} ({error})", status=1) from None


def _waiting_with_a_key() -> int:
    """How many lost submissions or unfinished tasks the home journal holds for the API."""
    from .engine import settings

    journal = Journal.existing()
    if journal is None:
        return 0
    try:
        return journal.open_work(settings.base_url()).waiting
    finally:
        journal.close()


def _ref_option(index: int, refs: list[str]) -> str:
    return f"--ref {index + 1}" if len(refs) > 1 else "--ref"


@contextmanager
def _field_errors(refs: list[str], option: str | None = None) -> Iterator[None]:
    """A RequestValidationError becomes the one-line error of the option it is about (`option`
    when the caller knows it better than the error's field)."""
    try:
        yield
    except RequestValidationError as error:
        name, _, index = error.field.partition("[")
        if option is None:
            option = (_ref_option(int(index.rstrip("]")), refs) if name == "image_urls" and index
                      else _OPTIONS.get(name, name))
        detail = str(error)
        if detail.startswith(f"{error.field}: "):
            detail = detail[len(error.field) + 2:]
        raise _Failure(f"{option}: {detail}") from None


class _Progress:
    """One line on stderr that follows the task: rewritten in place on a terminal, a new line
    per change otherwise (a log file gets each step once)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.task_id: str | None = None
        self._last = ""
        self._tty = sys.stderr.isatty()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, task: Task) -> None:
        self.task_id = task.task_id
        line = f"  {task.task_id}  {task.status.value:<10} {task.progress:3d}%"
        if line == self._last:
            return
        self._last = line
        if self._tty:
            sys.stderr.write(f"\r{line}  {self.elapsed():5.1f} s\x1b[K")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self._tty and self._last:
            sys.stderr.write("\n")
            self._last = ""


# -- history and export --------------------------------------------------------------------------


def _selected(args: argparse.Namespace) -> pandas.DataFrame:
    """qw.history() narrowed by the command's filters (SQLite applies them)."""
    return history(search=args.search, starred=True if args.starred else None, since=args.since,
                   model=args.model, status=args.status)


def _history(args: argparse.Namespace) -> int:
    frame = _selected(args)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
        return 0
    if args.format == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
        return 0
    if frame.empty:
        print(_nothing_journaled(args), file=sys.stderr)
        return 0
    submissions = frame.sort_values("submitted_at", ascending=False, kind="stable").groupby(
        "local_id", sort=False)
    rows = []
    for _, images in submissions:
        first = images.iloc[0]
        kept = int(images["url"].notna().sum() if first["status"] == "completed" else 0)
        status = first["status"] if isinstance(first["status"], str) else first["journal_state"]
        if first["journal_state"] in ("unknown", "refused", "expired"):
            status = first["journal_state"]
        rows.append((_when(first["submitted_at"]), first["task_id"] if isinstance(first["task_id"], str) else "-",
                     status, first["model"] or "", f"{first['size'] or ''} {first['resolution'] or ''}",
                     f"{kept}/{_int(first['n'])}", "" if _missing(first["cost"]) else f"{first['cost']:g}",
                     first["prompt"] or ""))
    total = len(rows)
    if args.limit:
        rows = rows[:args.limit]
    _table(("made (UTC)", "task", "status", "model", "size", "images", "cost", "prompt"), rows)
    if total > len(rows):
        print(f"({len(rows)} of {total}; --limit 0 shows all)", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    frame = _selected(args)
    chosen = set(frame["local_id"].dropna())
    journal = Journal.existing()
    tasks = [] if journal is None else [entry.task for entry in journal.entries()
                                        if entry.task is not None and entry.local_id in chosen]
    if not tasks:
        print(_nothing_journaled(args) + " Nothing was written.", file=sys.stderr)
        return 0
    target = Path(args.path)
    if args.path.endswith(("/", "\\")):
        target.mkdir(parents=True, exist_ok=True)
    try:
        written = export(target, tasks, client=_client())
    except (OSError, QwenError) as error:
        raise _Failure(f"PATH: cannot write {args.path} ({error})", status=1) from None
    print(f"{len(tasks)} task(s) exported", file=sys.stderr)
    print(written.resolve())
    return 0


def _nothing_journaled(args: argparse.Namespace) -> str:
    filtered = any(getattr(args, name) for name in ("search", "starred", "since", "model", "status"))
    if filtered:
        return "No journaled generation matches."
    return (f"No journaled generations in {home_path()}. Runs with APIMART_API_KEY are journaled there; "
            "demo runs are not (their simulator ends with the process).")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 120) -> None:
    """Columns as wide as their longest value; the last (the prompt) gets what is left."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    room = max(20, width - sum(widths) - 2 * len(widths))
    for row in [header, *rows]:
        cells = [f"{str(cell):<{w}}" for cell, w in zip(row, widths)]
        last = str(row[-1]).replace("\n", " ")
        print("  ".join([*cells, last if len(last) <= room else last[:room - 1] + "…"]).rstrip())


def _when(moment: Any) -> str:
    return "-" if _missing(moment) else moment.strftime(_TIME_FORMAT)


def _int(value: Any) -> str:
    return "?" if _missing(value) else str(int(value))


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


# -- the mounted command lines ------------------------------------------------------------------


def _simulator(argv: list[str]) -> int:
    from .simulator.__main__ import main as serve_simulator

    serve_simulator(argv)
    return 0
