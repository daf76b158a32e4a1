"""`python -m qwen_widgets`: the `qwen-widgets` command (see `cli.py`).

With no arguments it generates two images and prints where it saved them; against the
built-in simulator when APIMART_API_KEY is not set.
"""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m qwen_widgets"))
