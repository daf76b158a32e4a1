"""%qwen and %%qwen: show the panel, or generate straight from a cell."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from .engine import runner as _runner
from .engine import settings
from .engine.default import default_client
from .model.errors import JournalError
from .store.journal import Journal
from .model.errors import ImageUploadError, RequestValidationError, stopped_watching
from .model.request import MODELS, RESOLUTIONS, SIZES, ImageRequest

__all__: list[str] = []


def _unquote(text: str | None) -> str | None:
    """IPython splits magic lines without removing quotes: '"blurry"' -> 'blurry'."""
    if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


@magics_class
class QwenMagics(Magics):
    @magic_arguments()
    @argument("prompt", nargs="*", help="What to draw. Without a prompt (and no cell body), "
              "%%qwen shows the generator panel.")
    @argument("--model", "-m", help=f"One of: {', '.join(MODELS)}.")
    @argument("--size", "-s", help=f"Aspect ratio, one of: {', '.join(SIZES)}.")
    @argument("--resolution", "-r", help=f"One of: {', '.join(RESOLUTIONS)}.")
    @argument("-n", type=int, help="How many images, 1 to 6.")
    @argument("--negative", help="Negative prompt: what to avoid.")
    @argument("--ref", action="append", help="A reference image: a URL, or a local file, which is "
              "uploaded first (repeat for several).")
    @line_cell_magic
    def qwen(self, line: str, cell: str | None = None):
        """Generate images with Qwen-Image 2.0, or show the generator panel.

            %qwen                                   show the panel
            %qwen a red fox in snow --size 16:9 -n 2
            t = %qwen a lighthouse --resolution 2K  t is the finished Task
            %%qwen --model qwen-image-2.0-pro       the cell body is the prompt

        A direct generation shows a live card and returns the finished Task. Interrupting the
        cell stops the watching (the task may still finish) and prints the id to re-attach.
        """
        try:
            args = parse_argstring(self.qwen, line)
        except ValueError as error:  # an unbalanced quote
            raise UsageError(f"%qwen: {error}; quote the whole prompt or use %%qwen") from None
        words = " ".join(_unquote(word) or "" for word in args.prompt)
        if cell is not None and words:
            raise UsageError("with %%qwen the cell body is the prompt; put only options on the first line")
        prompt = cell if cell is not None else words
        if not prompt.strip():
            if cell is not None:
                raise UsageError("%%qwen: the cell body (the prompt) is empty")
            from .widgets import Panel

            display(Panel())
            return None
        fields = {"model": _unquote(args.model), "size": _unquote(args.size),
                  "resolution": _unquote(args.resolution), "n": args.n,
                  "negative_prompt": _unquote(args.negative),
                  "image_urls": [_unquote(url) for url in args.ref] if args.ref else None}
        try:
            if fields["image_urls"]:  # a local file is uploaded first
                fields["image_urls"] = default_client().references(fields["image_urls"])
            request = ImageRequest(prompt=prompt, **{k: v for k, v in fields.items() if v is not None})
        except (RequestValidationError, ImageUploadError) as error:
            raise UsageError(str(error)) from None
        return _generate_in_cell(request)


def _generate_in_cell(request: ImageRequest):
    from .widgets import Card

    card = Card(default_client(), request=request)
    display(card)
    future = card.start_generation(request)
    try:
        return _runner.wait_for(future)
    except KeyboardInterrupt:
        card.stop()  # a submission in flight is answered first, so nothing is left unknown
        future.result()
        task_id = card.task.task_id if card.task else None
        if task_id is None:
            print("Interrupted before the server assigned a task id.")
        else:
            print("S" + stopped_watching(task_id, "qw.Panel().attach", "qw.QwenClient().wait")[1:])
        return None


def unfinished_notice() -> str | None:
    """One line when the home journal holds unfinished tasks for the configured API, else None.

    Reads the journal file, whatever the mode, without creating a client or any file.
    """
    try:
        journal = Journal.existing()
    except JournalError as error:  # say so now, not at the first Generate
        return f"qwen_widgets: {error}"
    if journal is None:
        return None
    try:
        base_url = settings.base_url()
    except RequestValidationError as error:
        return f"qwen_widgets: APIMART_BASE_URL is not usable: {error}"
    try:
        waiting = journal.open_work(base_url).waiting
    finally:
        journal.close()
    if not waiting:
        return None
    if not settings.api_key() or settings.demo_forced():
        return (f"qwen_widgets: {waiting} unfinished task(s) or lost submission(s) from earlier sessions "
                "with an API key; "
                "set APIMART_API_KEY (and unset QWEN_WIDGETS_DEMO), then run qw.resume() to pick them up.")
    return (f"qwen_widgets: {waiting} unfinished task(s) or lost submission(s) from earlier sessions; "
            "run qw.resume() or press Resume in the %qwen panel to pick them up.")


def register(ipython) -> None:
    ipython.register_magics(QwenMagics)


def unregister(ipython) -> None:
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("qwen", None)
    ipython.magics_manager.registry.pop("QwenMagics", None)
