"""axe-core, the accessibility engine, run inside a Chromium page: ``node_modules/axe-core`` as
package-lock.json pins it (``make test`` installs it with npm ci). Missing, the tests that need it
skip locally and fail under ``CI=true``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2, levels A and AA (the standard the pages are held to), and axe's own best
# practices (landmarks, one main heading, ...).
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                        nodes: v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary)}));
}"""


def require_axe() -> str:
    """axe-core's source, or a skip (a failure under ``CI=true``) saying how to install it."""
    if AXE.exists():
        return AXE.read_text(encoding="utf-8")
    message = f"{AXE} is missing: run `make test` (npm ci installs axe-core from package-lock.json)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


async def violations(page: Page, source: str) -> list[dict[str, Any]]:
    """What axe-core finds against WCAG 2.2 AA and its best practices in the page as it stands. The engine goes in through
    DevTools' evaluate, which the page's Content-Security-Policy does not govern, so the page is
    checked with its real policy in force."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(source)
    found: list[dict[str, Any]] = await page.evaluate(_RUN, RULES)
    return found
