"""Each public module exports exactly what it documents, and the stub matches the binary."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "azr.executor": {"Execution", "Executor", "Job", "Limits", "Status", "values_equal"},
    "azr.errors": {
        "AzrError",
        "CheckpointError",
        "ConfigError",
        "DiskFull",
        "ExecutorClosed",
        "ExecutorError",
        "InvalidJob",
        "RunLocked",
        "SandboxUnavailable",
        "SourceTooLarge",
    },
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_exports(name: str) -> None:
    mod = importlib.import_module(name)
    assert set(mod.__all__) == PUBLIC[name]
    for attr in mod.__all__:
        assert getattr(mod, attr) is not None


@pytest.mark.parametrize(
    "name",
    ["azr.tasks", "azr.rl", "azr.models", "azr.generation", "azr.runtime", "azr.verify", "azr.run"],
)
def test_all_names_resolve(name: str) -> None:
    mod = importlib.import_module(name)
    missing = [a for a in getattr(mod, "__all__", []) if not hasattr(mod, a)]
    assert missing == []


def test_errors_raised_from_rust_are_the_python_classes() -> None:
    from azr import errors
    from azr.executor import Executor, Limits

    with pytest.raises(errors.ConfigError) as info:
        Executor(workers=1, limits=Limits(recursion_limit=1))
    assert type(info.value) is errors.ConfigError
    assert isinstance(info.value, errors.AzrError)
