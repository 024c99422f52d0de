"""``python -m azr.serve --host 127.0.0.1 --port 8000``."""

from azr.serve.cli import main

raise SystemExit(main(prog="python -m azr.serve"))
