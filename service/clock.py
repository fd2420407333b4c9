"""Time as the service sees it: a wall clock in seconds that tests can set instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float: ...


system_clock: Clock = time.time  # the builtin itself: read on every request


class SettableClock:
    """A clock that only moves when told to; starts at the real time."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
