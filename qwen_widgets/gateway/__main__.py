"""`python -m qwen_widgets.gateway COMMAND ...`: see `cli.py`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
