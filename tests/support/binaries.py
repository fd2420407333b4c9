"""The binaries the tests drive (Chromium, nginx) come from Debian's packages: missing one skips the
tests that need it locally, and fails them under ``CI=true``, where .ci/run installs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_binary(path: Path, *, package: str, needed_by: str) -> None:
    if path.exists():
        return
    message = f"{path} is missing: install Debian's {package} package (.ci/run does); {needed_by} need it"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)
