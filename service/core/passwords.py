"""Password hashing: argon2id through argon2-cffi, always off the event loop, with bounded concurrency.

Unknown users are checked against a dummy hash so that every login failure costs the same time.
"""

from __future__ import annotations

import asyncio
import secrets

import argon2
import argon2.exceptions

from ..errors import InvalidInput
from ..settings import PasswordSettings

MAX_PASSWORD_LENGTH = 1024  # SECURITY: bounds hashing cost per request (OWASP Authentication CS)


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
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored``; with no stored hash, spends the same time and says False."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored, password)

    def check_policy(self, password: str) -> None:
        """Length only, no composition rules (NIST SP 800-63B §5.1.1.2; ASVS 5.0 6.2.1, 6.2.9)."""
        if not self._min_length <= len(password) <= MAX_PASSWORD_LENGTH:
            raise InvalidInput(f"A password has {self._min_length} to {MAX_PASSWORD_LENGTH} characters.")

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
