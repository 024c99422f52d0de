from __future__ import annotations

import pytest

pytest.importorskip("azr.executor", reason="the compiled executor is not built")
