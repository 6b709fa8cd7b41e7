"""Integration tests need a reachable Juju controller; without one every test skips."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _controller_reason() -> str | None:
    juju = shutil.which("juju")
    if juju is None:
        return "no Juju controller reachable: the juju client is not installed"
    result = subprocess.run([juju, "show-controller"], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"no Juju controller reachable: {last}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _controller_reason()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
