"""The README's log-event reference lists every event the service and its CLI write, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def events_in_source() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found.update(re.findall(r'"event": "([a-z_]+)"', text))
        found.update(re.findall(r'\bevent="([a-z_]+)"', text))
        for pair in re.findall(r'\bevent = "([a-z_]+)" if .* else "([a-z_]+)"', text):
            found.update(pair)
    return found


def events_in_readme() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Log events", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")][1:]  # after the header
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_every_logged_event_is_documented_and_every_documented_one_is_logged() -> None:
    source = events_in_source()
    assert {"login", "refresh_reused", "bad_request", "throttle_cleared"} <= source  # the scan finds all kinds
    assert events_in_readme() == source
