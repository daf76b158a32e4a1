"""`python -m qwen_widgets`: generate a few images and print where they were saved.

Runs against the built-in simulator when APIMART_API_KEY is not set.
"""

from __future__ import annotations

import argparse
import pathlib
import time

from .engine.sync import QwenClient


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qwen_widgets", description=__doc__)
    parser.add_argument("prompt", nargs="?", default="A cute orange cat napping in the sunshine")
    parser.add_argument("--size", default="16:9")
    parser.add_argument("-n", type=int, default=2)
    parser.add_argument("--out", default="qwen_images", help="folder for the images")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    with QwenClient() as client:
        print(f"{'Simulator' if client.demo else 'APIMart'}: generating {args.n} image(s)…")
        started = time.monotonic()
        task = client.generate(
            args.prompt,
            size=args.size,
            n=args.n,
            on_update=lambda t: print(f"  {t.task_id}  {t.status.value:<10} {t.progress:3d}%"),
        )
        print(f"done in {time.monotonic() - started:.1f} s; {len(task.images)} image(s):")
        for image in task.images:
            path, _ = client.save_image(task, image, out)
            expiry = f"{image.expires_at:%Y-%m-%d %H:%M} UTC" if image.expires_at else "unknown"
            print(f"  {path.resolve()}  ({image.width}x{image.height}, URL expires {expiry})")


if __name__ == "__main__":
    main()
