"""Suite-wide settings. Under CI, hypothesis replays a fixed set of examples, so a run's outcome
depends on the code alone; locally it keeps exploring new ones."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
