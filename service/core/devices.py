"""A short, human name for the device behind a User-Agent string ("Firefox on Linux"), for the sessions page.

Deliberately coarse: it names what a person recognises, and never claims more than the string says.
"""

from __future__ import annotations

import re

# First match wins: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edge", r"Edg(?:e|A|iOS)?/"), ("Opera", r"OPR/|Opera"), ("Firefox", r"Firefox/|FxiOS/"),
    ("Chrome", r"Chrome/|CriOS/|Chromium/"), ("Safari", r"Safari/"), ("curl", r"^curl/"),
    ("Python", r"python|aiohttp"),
)
_SYSTEMS = (
    ("Android", r"Android"), ("iPhone", r"iPhone"), ("iPad", r"iPad"), ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"), ("ChromeOS", r"CrOS"), ("Linux", r"Linux"),
)


def describe(user_agent: str) -> str:
    browser = _first(_BROWSERS, user_agent)
    system = _first(_SYSTEMS, user_agent)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


def _first(table: tuple[tuple[str, str], ...], text: str) -> str | None:
    for name, pattern in table:
        if re.search(pattern, text, re.IGNORECASE if name in ("Python",) else 0):
            return name
    return None
