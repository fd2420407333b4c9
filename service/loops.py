"""The event loop a server process runs on: uvloop where it is installed (Linux), else asyncio's own.

uvloop answers the hot path faster (``make bench`` measures both loops side by side); ``server.event_loop
= "asyncio"`` turns it off, for instance to rule it out when chasing a bug.
"""

from __future__ import annotations

import asyncio
import importlib.util


def new_event_loop(choice: str = "uvloop") -> asyncio.AbstractEventLoop:
    """A new loop of ``choice`` (``uvloop`` or ``asyncio``); asyncio's when uvloop is not installed
    (it is a Linux-only dependency)."""
    if choice == "uvloop" and importlib.util.find_spec("uvloop") is not None:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()

