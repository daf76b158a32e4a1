"""Plain-text descriptions of requests, tasks, errors, costs, the balance and spending limits,
for the widgets. Pure; no widgets. Money is shown with a literal `$`: the views put these words
in escaped HTML, never in a Label (which would typeset `$...$` as LaTeX)."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

from ..model.account import PRICE_SOURCES, Balance, amount, describe_price
from ..model.errors import (
    APIError,
    AuthenticationError,
    ImageFetchError,
    ImageUploadError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    QwenError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SpendingLimitError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
)
from ..model.limits import SpendingLimits, Usage
from ..model.lineage import Reference
from ..model.request import OUTPUT_SIZES, ImageRequest, ModelRules
from ..model.task import GeneratedImage, Task, TaskStatus
from ..model.urls import is_http_url

__all__ = [
    "output_size_line",
    "params_line",
    "status_line",
    "timings_line",
    "expiry_words",
    "expiry_line",
    "error_message",
    "retry_message",
    "stopped_message",
    "failed_status",
    "safe_link",
    "isolate",
    "friendly_error",
    "money",
    "cost_words",
    "balance_words",
    "usage_words",
    "plan_cost",
    "limit_message",
    "photo_problem",
]


def output_size_line(size: str, resolution: str, n: int, rules: ModelRules | None = None) -> str:
    """'16:9 2K -> 2048x1152, 4 images', from the model's rules (by default the documented
    table); '21:9 2K, 4 images' when they do not know the pixels."""
    pixels = rules.pixels(size, resolution) if rules is not None else OUTPUT_SIZES.get((size, resolution))
    width, height = pixels or (None, None)
    images = "1 image" if n == 1 else f"{n} images"
    return f"{size} {resolution} -> {width}x{height}, {images}" if width else f"{size} {resolution}, {images}"


def isolate(text: str) -> str:
    """User text for a Label, wrapped in a bidi isolate (FSI ... PDI): a right-to-left
    override inside it cannot reorder the text that follows on screen."""
    return f"\u2068{text}\u2069"


def params_line(request: ImageRequest | None) -> str:
    if request is None:
        return "re-attached by task id (request unknown)"
    parts = [request.model, request.size, request.resolution, f"n={request.n}"]
    if request.negative_prompt:
        parts.append(f"avoid: {isolate(request.negative_prompt)}")
    if request.image_urls:
        parts.append(f"{len(request.image_urls)} reference image(s)")
    return " · ".join(parts)


def status_line(task: Task | None, elapsed: float) -> str:
    """Task id, state and time, with an honest note once the server's estimate is exceeded."""
    if task is None:
        return f"submitting… {elapsed:.0f} s"
    head = f"{task.task_id} · {task.status.value}"
    if task.done:
        return head
    estimate = task.estimated_time
    if task.status is TaskStatus.SUBMITTED:
        return f"{head} · {elapsed:.0f} s"
    progress = f"{task.progress}%"
    if estimate is None:
        return f"{head} · {progress} · {elapsed:.0f} s elapsed"
    if elapsed > estimate:
        return (f"{head} · {progress} · taking longer than estimated "
                f"({elapsed:.0f} s, estimated {estimate:.0f} s)")
    return f"{head} · {progress} · {elapsed:.0f} s of ~{estimate:.0f} s estimated"


def timings_line(task: Task, elapsed: float | None) -> str:
    """'took 19.3 s here · 18.7 s on the server (estimated 60 s)': what this kernel waited,
    then what the server says it took; `elapsed` None when not watched here."""
    parts = [f"took {elapsed:.1f} s here"] if elapsed is not None else []
    server = f"{task.actual_time:.1f} s on the server" if task.actual_time is not None else ""
    if task.estimated_time is not None:
        server = f"{server} (estimated {task.estimated_time:.0f} s)" if server else \
            f"estimated {task.estimated_time:.0f} s on the server"
    if server:
        parts.append(server)
    if task.request is not None and len(task.images) != task.request.n:
        parts.append(f"{len(task.images)} of {task.request.n} images returned")
    return " · ".join(parts)


def expiry_words(expires_at: datetime | None, now: datetime | None = None) -> str:
    """'expires in 23 h', 'expires in 12 min', 'expired 3 h ago'."""
    if expires_at is None:
        return "expiry unknown"
    now = now or datetime.now(timezone.utc)
    seconds = (expires_at - now).total_seconds()
    span = _span(abs(seconds))
    return f"expires in {span}" if seconds >= 0 else f"expired {span} ago"


def expiry_line(image: GeneratedImage) -> str:
    """HTML: the URL's expiry, whether a local copy exists, and a red warning when neither
    will last the hour. Only fixed text and numbers: nothing here needs escaping."""
    if image.local_path is not None:
        return f"{expiry_words(image.expires_at)} · saved locally"
    warning = image.expiry_warning()
    if warning:
        return (f'<span style="color: var(--jp-error-color1, #c62828); font-weight: 600">'
                f'{html.escape(warning)}: save it now</span>')
    return expiry_words(image.expires_at)


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def error_message(error: BaseException, *, watching: str | None = None) -> str:
    """One readable line for a card: what happened, whether anything was billed, and what to
    do; never a traceback nor a library's words. `watching`: the id of the task that was
    being watched when the error came (it exists: it may still finish and be billed)."""
    return " ".join(" ".join(part for part in _error_parts(error, watching) if part).split())


_NOTHING_BILLED = "Nothing was created or billed."


def _billing(watching: str | None) -> str:
    return f"Task {watching} exists and may still finish and be billed." if watching else _NOTHING_BILLED


def _again(watching: str | None, submit: str = "Then press Retry.") -> str:
    return "Press Re-attach to watch it again." if watching else submit


def _error_parts(error: BaseException, watching: str | None) -> tuple[str, str, str]:
    """(what happened, whether anything was billed, what to do)."""
    if isinstance(error, RequestValidationError):
        return f"Invalid {error.field}: {error.rule}.", "Nothing was sent.", ""
    if isinstance(error, AuthenticationError):
        return ("The API refused the key (401).", _billing(watching),
                ("Check your key: paste a valid one into the panel's key field (at its top), or set "
                 "APIMART_API_KEY and restart the kernel."))
    if isinstance(error, PermissionDeniedError):
        return (f"The API refused this request ({error.status_code}: {_clause(error.message)}).",
                _billing(watching), "Check your balance and the key's permissions in the APIMart console.")
    if isinstance(error, RateLimitError):
        return ('The API kept answering "too many requests" (429).', _billing(watching),
                "Wait a minute, then try again" + (" with Re-attach." if watching else " with Retry."))
    if isinstance(error, NotFoundError) and error.task_id:
        return (f"The API does not know task {error.task_id} (404: {_clause(error.message)}).",
                "Task ids are forgotten after about a day.", "")
    if isinstance(error, ServerError):
        return (f"The API failed ({error.status_code}: {_clause(error.message)}).", _billing(watching),
                _again(watching, "Try again in a moment with Retry."))
    if isinstance(error, MalformedResponseError):
        return (f"The API's answer could not be read ({_clause(error.message)}).", _billing(watching),
                _again(watching, "Try again in a moment with Retry."))
    if isinstance(error, APIError):
        status = f"{error.status_code}: " if error.status_code is not None else ""
        return (f"The API refused the request ({status}{_clause(error.message)}).", _billing(watching),
                "" if watching else "Change the request (Edit) and generate again.")
    if isinstance(error, TransportError):
        plain = error.plain or "the network failed"
        if watching:
            return f"Network problem while watching task {watching}: {plain}.", _billing(watching), _again(watching)
        return (f"Network problem: {plain}.",
                "The request never reached the API: nothing was created or billed.",
                "Check the connection, then press Retry.")
    if isinstance(error, SubmitOutcomeUnknownError):
        lost = "The submission went out but its answer was lost."
        if error.resent:
            return (lost, "The task may exist and be billed.",
                    ("Retry sends it again with the same idempotency key: the server answers with that task "
                     "instead of making a second one."))
        return (lost, "The task may exist and be billed.",
                "It was NOT resent (resend_with_key is off): check the APIMart console before trying again.")
    if isinstance(error, TaskFailedError):
        task = error.task
        billed = "Failed images are not billed." if task.status is TaskStatus.FAILED else ""
        return (f"Task {task.task_id} {task.status.value}: {_clause(task.error or 'no reason given')}.", billed,
                "Retry makes a new task; Edit loads the request into the form.")
    if isinstance(error, TaskTimeoutError):
        if error.server_wait is not None:
            what = (f"The API asked to wait {error.server_wait:.0f} s before asking about task {error.task_id} "
                    f"again, past the {error.timeout:.3g} s allowed, so watching stopped.")
        else:
            what = f"Task {error.task_id} was still running after {error.timeout:.3g} s, so watching stopped."
        return what, "It may still finish and be billed.", "Press Re-attach to watch it again."
    if isinstance(error, ImageFetchError):
        return f"Image not loaded: {_clause(error.plain or error.reason)}.", "", ""
    if isinstance(error, SpendingLimitError):
        return limit_message(error), "", ""
    if isinstance(error, ImageUploadError):
        said = str(error).removeprefix(f"could not upload {error.filename}: ")
        return f"Your image {error.filename} could not be uploaded: {said}", "", ""
    if isinstance(error, QwenError):
        return _sentence(str(error)), "", ""
    return f"Unexpected error ({type(error).__name__}): {error}", "", ""


def _clause(text: str) -> str:
    """A server's words to quote inside a sentence: trimmed, without their own full stop."""
    return text.strip().rstrip(".")


def _sentence(text: str) -> str:
    """`text` with a capital letter and a full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def retry_message(error: QwenError, delay: float) -> str:
    """What went wrong, and that it is tried again by itself in `delay` seconds."""
    if isinstance(error, RateLimitError):
        return f"rate limited, retrying in {delay:.0f} s"
    return f"{_error_parts(error, None)[0]} Retrying in {delay:.0f} s."


def stopped_message(task_id: str) -> str:
    """Stop, said to the person who pressed it: the task runs on, and how to watch it again."""
    return (f"Stopped watching task {task_id}. It keeps running on the server and may still finish and be "
            "billed: press Re-attach to watch it again.")


def failed_status(error: BaseException, task: Task | None) -> str:
    """The card's one status line once an error ended its work (never "submitting…" again)."""
    if task is None:
        if isinstance(error, SubmitOutcomeUnknownError):
            return "submission's answer lost"
        return "not submitted"
    if task.done:
        return f"{task.task_id} · {task.status.value}"
    return f"{task.task_id} · watching stopped (last seen {task.status.value}, {task.progress}%)"


def safe_link(url: str, text: str | None = None) -> str:
    """An escaped <a> for http(s) URLs; anything else becomes inert escaped text."""
    shown = html.escape(text if text is not None else url)
    if not is_http_url(url.strip()) or url != url.strip():
        return f"<code>{shown}</code>"
    return f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">{shown}</a>'


_FIELD_WORDS = {"prompt": "The prompt", "negative_prompt": "The negative prompt", "model": "The model",
                "size": "The size", "resolution": "The resolution", "n": "The number of images"}


def friendly_error(field: str, message: str, *, limit: int | None = None) -> str:
    """A validation problem in the panel user's words: no parameter names, no `(got ...)`.

    `message` is a rule or a whole RequestValidationError text; `limit` is the panel's cap on
    images per comparison.
    """
    rule = message.split(": ", 1)[1] if message.startswith(f"{field}: ") else message
    rule = re.sub(r" \(got .*\)$", "", rule, flags=re.S)
    base = field.split("[")[0]
    if base == "prompt" and "empty" in rule:
        return "Write a prompt to generate."
    if rule.startswith("must be at most") and "this one has" in rule:
        return f"{_FIELD_WORDS.get(base, 'This field')} is too long: {rule.removeprefix('must be ')}."
    if base == "image_urls":
        line = re.search(r"\[(\d+)\]", field)
        where = f"line {int(line.group(1)) + 1}: " if line else ""
        return f"{where}{rule}"
    if base == "max_images":
        counts = re.search(r"makes (\d+) tasks and (\d+) images", rule)
        tasks, images = counts.groups() if counts else ("?", "?")
        return (f"This comparison would make {images} images ({tasks} tasks); the panel runs at most "
                f"{limit if limit is not None else 'its limit of'} images at once. Tick fewer values or "
                "lower the number of images.")
    if base == "generate" and "vary at most two" in rule:
        return (f"Compare can vary at most two things at once; now {rule.split('now ', 1)[-1]}. "
                "Keep one value (or one prompt line) for the others.")
    if "an axis must not repeat" in rule:
        return f"{_FIELD_WORDS.get(base, 'A field')} repeats a value; each compared value must differ."
    if "an axis needs at least one value" in rule or (base in ("model", "size", "resolution") and "one of" in rule):
        return f"Tick at least one {base} to compare." if base != "prompt" else "Write a prompt to compare."
    return f"{_FIELD_WORDS.get(base, base.replace('_', ' ').capitalize())} {rule}."


# -- money: costs, the balance, spending limits ----------------------------------------------


def money(value: float) -> str:
    """'$0.04', '$12.50', or '$0.021' when cents would round a price per image away."""
    text = f"{value:.2f}"
    if abs(value - round(value, 2)) > 1e-9:
        text = f"{value:.4f}".rstrip("0")
    return f"${text}"


def cost_words(task: Task) -> str:
    """'cost $0.04' (with credits when the service counts them), or '' when none was reported.
    A no-break space keeps the word with its amount when a narrow caption wraps."""
    parts = [money(task.cost)] if task.cost is not None else []
    if task.credits_cost:
        parts.append(f"{task.credits_cost:g} credits")
    if not parts:
        return ""
    return f"cost\u00a0{parts[0]}" + (f" ({parts[1]})" if len(parts) > 1 else "")


def balance_words(balance: Balance, demo: bool = False, account: Balance | None = None) -> str:
    """'Balance $9.87 ($0.13 used)', 'Balance 12 images left', 'Balance 1200 credits',
    'Balance: unlimited', in the unit the service reports (never assumed to be dollars); with
    the `account`'s balance too when it says something the key's does not."""
    if balance.unlimited:
        text = "Balance: unlimited"
    elif balance.remaining is not None:
        left = amount(balance.remaining, balance.unit)
        if balance.unit is not None and balance.unit.lower() == "images":
            left += " left"  # a class gateway's budget for this student
        used = f" ({amount(balance.used, balance.unit)} used)" if balance.used else ""
        text = f"Balance {left}{used}"
    elif balance.remaining_credits is not None:
        text = f"Balance {balance.remaining_credits:g} credits"
    else:
        text = "Balance unknown"
    if account is not None and (account.remaining, account.unlimited) != (balance.remaining, balance.unlimited):
        whole = "unlimited" if account.unlimited else (
            amount(account.remaining, account.unit) if account.remaining is not None else "unknown")
        text += f" for this key · {whole} for the account"
    return f"{text} (simulated)" if demo else text


def usage_words(usage: Usage | None, limits: SpendingLimits) -> str:
    """'12 of 50 images today · $0.25 of $2.00 spent today' for the limits that are set."""
    if usage is None or not limits.active:
        return ""
    parts = []
    if limits.max_images_per_day is not None:
        parts.append(f"{usage.images} of {limits.max_images_per_day} images today")
    if limits.max_spend_per_day is not None:
        parts.append(f"{money(usage.spend)} of {money(limits.max_spend_per_day)} spent today")
    return " · ".join(parts)


def plan_cost(images: dict[str, int], prices: dict[str, tuple[float | None, str]],
              demo: bool = False) -> str:
    """What a plan of `images` per model will cost: 'about $0.08 at $0.021 per image
    (APIMart's pricing endpoint)', or 'price unknown'. `prices` maps each model to
    `(price, source)` as `client.price_per_image` answers."""
    if not images or any(prices[model][0] is None for model in images):
        return PRICE_SOURCES["unknown"]
    total = sum(count * prices[model][0] for model, count in images.items())
    source = prices[next(iter(images))][1]
    distinct = {prices[model][0] for model in images}
    if len(distinct) == 1:
        text = f"about ${total:.2f} {describe_price(distinct.pop(), source)}"
    else:
        each = ", ".join(f"{money(prices[model][0])} per {model} image" for model in images)
        text = f"about ${total:.2f} at {each} ({PRICE_SOURCES[source]})"
    return text[:-1] + ", simulated)" if demo else text


def limit_message(error: SpendingLimitError, now: datetime | None = None) -> str:
    """A daily limit, for the person at the panel: how much is used, what this needs, what
    to do, and when room frees up (in the rolling 24 hours). A class gateway's refusal is said
    in the gateway's own words, which are written for the student."""
    if error.scope is not None:
        said = str(error)
        return said[:1].upper() + said[1:] + ("" if said.endswith(".") else ".")
    if error.limit.startswith("spend"):
        head = (f"Daily spending limit: {money(error.used)} of {money(error.allowed)} spent in the "
                f"last 24 hours; this needs about {money(error.needed)}.")
        smaller = "Ask for fewer images"
    else:
        left = max(0, int(error.allowed - error.used))
        head = (f"Daily limit: {error.used:g} of {error.allowed:g} images made in the last 24 hours; "
                f"this needs {error.needed:g}.")
        smaller = f"Ask for at most {left} image{'s' * (left != 1)}" if left else ""
    if error.frees_at is None:
        return f"{head} That is more than the whole limit: ask for fewer images."
    now = now or datetime.now(timezone.utc)
    frees = datetime.fromtimestamp(error.frees_at, timezone.utc)
    wait = f"room frees up in {_span(max(60.0, (frees - now).total_seconds()))} ({frees:%H:%M} UTC)"
    return f"{head} {smaller}, or wait: {wait}." if smaller else f"{head} Wait: {wait}."


def photo_problem(name: str, rule: str) -> str:
    """Why one of your images was not added, naming it as you know it ('cat.txt'), not as
    the check saw it ('image.bin' for uploaded bytes)."""
    found = re.search(r" (is (?:empty|not a JPEG|[\d.]+ MB,).*)$", rule)
    return f"{name} was not added: it {found.group(1)}." if found else f"{name} was not added: {rule}."


# -- the library: when, where from, what was held constant -----------------------------------


def made_words(when: datetime | None) -> str:
    """'made 2026-12-07 14:02 UTC' (UTC: the kernel's clock may not be the reader's)."""
    if when is None:
        return ""
    return f"made {when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"


def origin_words(references: tuple[Reference, ...], diff: str | None = None) -> str:
    """'made from task_01… image 1 (size 1:1 -> 16:9, prompt + 'at dusk')', or '' when no
    reference is known to be one of our results."""
    parents = [ref for ref in references if ref.parent_task_id is not None]
    if not parents:
        return ""
    text = "made from " + ", ".join(ref.label for ref in parents)
    return f"{text} ({diff})" if diff else text


def settings_text(request: ImageRequest) -> str:
    """The request as a person would paste it: the prompt, then one field per line."""
    lines = [request.prompt, f"model: {request.model}", f"size: {request.size}",
             f"resolution: {request.resolution}", f"n: {request.n}"]
    if request.negative_prompt:
        lines.append(f"negative prompt: {request.negative_prompt}")
    lines += [f"reference: {url}" for url in request.image_urls]
    return "\n".join(lines)


def held_constant(cells_requests: list[ImageRequest], varied: set[str]) -> str:
    """What a comparison kept the same, 'held constant: qwen-image-2.0 · 1K · n=2 · no
    negative prompt · 1 reference image', from its requests and the fields that varied."""
    first = cells_requests[0]
    parts = [f"{name}: {getattr(first, name)}" if name != "n" else f"n={first.n}"
             for name in ("model", "size", "resolution", "n") if name not in varied]
    if "negative_prompt" not in varied:
        parts.append(f"avoid: {isolate(first.negative_prompt)}" if first.negative_prompt else "no negative prompt")
    if first.image_urls:
        parts.append(f"{len(first.image_urls)} reference image(s)")
    return "held constant: " + " · ".join(parts) if parts else ""


def size_words(count: int) -> str:
    """'3.2 MB', '12 KB'."""
    if count >= 1024 * 1024:
        return f"{count / 1024 / 1024:.1f} MB"
    return f"{max(1, round(count / 1024)) if count else 0} KB"
