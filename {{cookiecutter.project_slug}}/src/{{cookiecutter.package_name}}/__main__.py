"""``python -m`` entry point: the same as the server command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
