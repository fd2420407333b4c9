"""Password hashing: argon2id through argon2-cffi, always off the event loop, with bounded concurrency.

Unknown users are checked against a dummy hash, and every check takes at least as long as the slowest
one seen lately, so that a sign-in's time says nothing about the user: whether they exist, or with which
argon2 parameters their hash was made (a user who has not signed in since the parameters changed
still has the old ones; their hash is upgraded at their next sign-in).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import argon2
import argon2.exceptions

from ..errors import InvalidInput
from ..settings import PasswordSettings

MAX_PASSWORD_LENGTH = 1024  # SECURITY: bounds hashing cost per request (OWASP Authentication CS)
# The floor follows the slowest check seen, forgetting slowly (to half in about 700 checks), so that a
# single check slowed by a busy machine does not slow every sign-in for long; and never above 1 s.
_FLOOR_DECAY = 0.999
_MAX_FLOOR = 1.0


class Passwords:
    """Hash and verify passwords with the configured argon2id parameters."""

    def __init__(self, settings: PasswordSettings) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_cost,
            parallelism=settings.parallelism,
            type=argon2.Type.ID,
        )
        self._min_length = settings.min_length
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        started = time.perf_counter()
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self._floor = time.perf_counter() - started  # what a check with today's parameters costs

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored``; with no stored hash, spends the same time and says False.

        SECURITY: timing. Whatever ``stored`` holds (nothing, today's parameters, cheaper or costlier
        older ones), the check takes at least the slowest seen lately: the wait is padded, off the
        thread pool and outside the concurrency slots.
        """
        async with self._slots:
            matched, spent = await asyncio.to_thread(self._timed_verify, stored, password)
        self._floor = max(self._floor * _FLOOR_DECAY, min(spent, _MAX_FLOOR))
        if spent < self._floor:
            await asyncio.sleep(self._floor - spent)
        return matched

    def check_policy(self, password: str) -> None:
        """Length only, no composition rules (NIST SP 800-63B §5.1.1.2; ASVS 5.0 6.2.1, 6.2.9)."""
        if not self._min_length <= len(password) <= MAX_PASSWORD_LENGTH:
            raise InvalidInput(f"A password has {self._min_length} to {MAX_PASSWORD_LENGTH} characters.")

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

    def _timed_verify(self, stored: str | None, password: str) -> tuple[bool, float]:
        started = time.perf_counter()
        matched = self._verify(stored, password)
        return matched, time.perf_counter() - started

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
