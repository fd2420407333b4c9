"""The TOTP second factor (RFC 6238, via pyotp) and its recovery codes: enrolment, the second step of a
password sign-in, step-up with a code, and turning it off. No HTTP here.

Secrets are sealed with AES-GCM under ``<keys>/mfa.key`` (the user id as associated data, so a sealed
secret cannot be moved to another user), and recovery codes are kept as HMACs under the same key: a copy
of the Redis data alone gives neither. A code is accepted for the time steps around now (one step of
clock drift either way), and only for a step later than the last one accepted, so a code that was
seen cannot be replayed within its window (RFC 6238 §5.2).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..clock import Clock
from ..errors import CredentialsError, InvalidInput
from ..metrics import Counts
from ..storage.mfa import Enrolment, MfaStore
from .access_tokens import AccessClaims
from .auth import Authenticator, Client, Issued, pending_digest

log = logging.getLogger("service.security")

STEP = 30  # seconds: RFC 6238's default time step, which every authenticator app uses
DRIFT = 1  # steps either side of now that are accepted
ENROLMENT_TTL = 600  # seconds to scan the QR code and confirm it with a code
RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper and typed back
_RECOVERY = re.compile(rf"[{_ALPHABET}]{{10}}")
_WRONG_CODE = "That code is not correct, or this sign-in has expired."


@dataclasses.dataclass(frozen=True)
class Setup:
    """A secret being enrolled: as text, and as the otpauth:// URI a QR code carries."""

    secret: str
    uri: str


class Totp:
    """One place for the second factor, for the handlers and the CLI alike."""

    def __init__(self, auth: Authenticator, store: MfaStore, key: bytes, clock: Clock, *, issuer: str,
                 metrics: Counts | None = None) -> None:
        self._auth = auth
        self._store = store
        self._seal_key = hashlib.sha256(b"totp secret\0" + key).digest()
        self._code_key = hashlib.sha256(b"recovery code\0" + key).digest()
        self._clock = clock
        self._issuer = issuer
        self._metrics = metrics or Counts()

    async def status(self, user_id: str) -> Enrolment:
        return await self._store.get(user_id)

    async def begin(self, claims: AccessClaims) -> Setup:
        """A new secret for the signed-in user to scan; TOTP is on only once a code confirms it.

        Raises:
            StepUpRequired: no recent authentication in this session.
            InvalidInput: TOTP is on already.
        """
        self._auth.require_recent(claims)
        if await self._store.has_totp(claims.user_id):
            raise InvalidInput("Two-step sign-in is on already. Turn it off first to use another app.")
        secret = pyotp.random_base32()
        await self._store.begin(claims.user_id, self._seal(claims.user_id, secret),
                                until=self._clock() + ENROLMENT_TTL)
        return Setup(secret, pyotp.TOTP(secret).provisioning_uri(name=claims.username, issuer_name=self._issuer))

    async def pending(self, claims: AccessClaims) -> Setup | None:
        """The secret being enrolled, to show again after a mistyped code; None if none is under way."""
        enrolment = await self._store.get(claims.user_id)
        secret = self._unseal(claims.user_id, enrolment.pending) if enrolment.pending else None
        if secret is None or enrolment.pending_until < self._clock():
            return None
        return Setup(secret, pyotp.TOTP(secret).provisioning_uri(name=claims.username, issuer_name=self._issuer))

    async def confirm(self, claims: AccessClaims, code: str) -> list[str]:
        """Turn TOTP on with the first code of the secret being enrolled; returns the recovery codes,
        shown this once (only their HMACs are kept).

        Raises:
            StepUpRequired: no recent authentication in this session.
            InvalidInput: no enrolment under way, it expired, or the code is wrong.
        """
        self._auth.require_recent(claims)
        enrolment = await self._store.get(claims.user_id)
        secret = self._unseal(claims.user_id, enrolment.pending) if enrolment.pending else None
        step = self._step_of(secret, code) if secret and enrolment.pending_until >= self._clock() else None
        codes = _new_codes()
        if step is None or not await self._store.confirm(claims.user_id, enrolment.pending or b"", now=self._clock(),
                                                         step=step, recovery=self._digests(claims.user_id, codes)):
            raise InvalidInput("That code does not match. Scan the QR code again and enter the code it shows now.")
        self._metrics.factor("totp", "enrolled")
        self._metrics.factor("recovery", "generated")
        log.info("totp_enabled", extra={"event": "totp_enabled", "user": claims.user_id})
        return [_shown(code) for code in codes]

    async def regenerate(self, claims: AccessClaims) -> list[str]:
        """New recovery codes; the old ones stop working.

        Raises:
            StepUpRequired, InvalidInput: no recent authentication; TOTP is off.
        """
        self._auth.require_recent(claims)
        codes = _new_codes()
        if not await self._store.replace_recovery(claims.user_id, self._digests(claims.user_id, codes)):
            raise InvalidInput("Two-step sign-in is off: there are no recovery codes to replace.")
        self._metrics.factor("recovery", "generated")
        log.info("recovery_codes_generated", extra={"event": "recovery_codes_generated", "user": claims.user_id})
        return [_shown(code) for code in codes]

    async def disable(self, claims: AccessClaims, code: str, client: Client) -> None:
        """TOTP off, with a current code or a recovery code (counted by the throttle like passwords).

        Raises:
            StepUpRequired, Throttled, InvalidInput: no recent authentication; too many failures; a wrong code.
        """
        self._auth.require_recent(claims)
        if await self._checked(claims.user_id, claims.username, code, client) is None:
            raise InvalidInput("That code is not correct.")
        await self.remove(claims.user_id)

    async def remove(self, user_id: str) -> bool:
        """TOTP off and the recovery codes gone (the user's choice, or ``users mfa reset``)."""
        removed = await self._store.remove(user_id)
        if removed:
            self._metrics.factor("totp", "removed")
            log.info("totp_disabled", extra={"event": "totp_disabled", "user": user_id})
        return removed

    async def step_up(self, claims: AccessClaims, code: str, client: Client) -> Issued:
        """Step up with a code (or a recovery code) instead of the password.

        Raises:
            Throttled, InvalidInput: too many failures; a wrong code, or TOTP is off.
        """
        factor = await self._checked(claims.user_id, claims.username, code, client)
        if factor is None:
            raise InvalidInput("That code is not correct.")
        return await self._auth.stepped_up(claims, factor)

    async def sign_in(self, pending: str, code: str, client: Client, nonces: list[str]) -> Issued:
        """The second step: a code for a pending sign-in of one of these login nonces starts the session.

        Raises:
            Throttled: too many recent failures for this user or from this client.
            CredentialsError: the same answer for a wrong code and an unknown, expired or used-up sign-in.
        """
        digest = pending_digest(pending[:100])
        waiting = await self._store.take(digest, [pending_digest(nonce) for nonce in nonces] + [""], now=self._clock())
        user = await self._auth.users.get(waiting.user_id) if waiting else None
        if waiting is None or user is None:
            self._metrics.factor("totp", "failure")
            raise CredentialsError(_WRONG_CODE)
        factor = await self._checked(user.id, user.name, code, client)
        if factor is None:
            raise CredentialsError(_WRONG_CODE)
        await self._store.drop(digest)
        method = "password+recovery" if factor == "recovery" else "password+totp"
        user = dataclasses.replace(user, generation=waiting.generation)  # no password change meanwhile
        issued = await self._auth.start_session(user, client, None, method=method, remember=waiting.remember)
        self._auth.counted_login(user.id, issued, method)
        return issued

    async def _checked(self, user_id: str, username: str, code: str, client: Client) -> str | None:
        """``totp`` or ``recovery`` if ``code`` is one (a recovery code is spent), else None; every
        try takes a throttle slot, as a password guess does, and a success gives it back."""
        attempt = await self._auth.admit(username, client)
        factor = await self._check(user_id, code)
        if factor is None:
            log.info("code_failed", extra={"event": "code_failed", "user": user_id})
            self._metrics.factor("totp", "failure")
            return None
        await self._auth.admitted(attempt)
        self._metrics.factor(factor, "success")
        return factor

    async def _check(self, user_id: str, code: str) -> str | None:
        typed = "".join(code[:64].split()).replace("-", "").lower()
        if typed.isascii() and typed.isdigit() and len(typed) == 6:
            enrolment = await self._store.get(user_id)
            secret = self._unseal(user_id, enrolment.secret) if enrolment.secret else None
            step = self._step_of(secret, typed) if secret else None
            if step is None:
                return None
            if not await self._store.use_step(user_id, step):
                self._metrics.factor("totp", "replay")
                log.warning("totp_replayed", extra={"event": "totp_replayed", "user": user_id})
                return None
            return "totp"
        if _RECOVERY.fullmatch(typed):
            left = await self._store.use_recovery(user_id, self._digests(user_id, [typed])[0])
            if left is not None:
                log.info("recovery_code_used", extra={"event": "recovery_code_used", "user": user_id, "count": left})
                return "recovery"
        return None

    def _step_of(self, secret: str, code: str) -> int | None:
        """The latest time step around now whose code is ``code``."""
        now = int(self._clock() // STEP)
        otp = pyotp.TOTP(secret)
        typed = "".join(code[:64].split())
        if not (typed.isascii() and typed.isdigit()):  # compare_digest takes ASCII only; "１２３" is digits too
            return None
        found = None
        for step in range(now - DRIFT, now + DRIFT + 1):
            if hmac.compare_digest(otp.generate_otp(step), typed):
                found = step
        return found

    def _seal(self, user_id: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._seal_key).encrypt(nonce, secret.encode(), user_id.encode())

    def _unseal(self, user_id: str, sealed: bytes) -> str | None:
        try:
            return AESGCM(self._seal_key).decrypt(sealed[:12], sealed[12:], user_id.encode()).decode()
        except (InvalidTag, ValueError):  # another mfa.key, or moved from another user: no secret
            return None

    def _digests(self, user_id: str, codes: list[str]) -> list[str]:
        return [base64.urlsafe_b64encode(hmac.digest(self._code_key, f"{user_id}:{code}".encode(), "sha256")[:18])
                .decode() for code in codes]


def _new_codes() -> list[str]:
    return ["".join(secrets.choice(_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]


def _shown(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"
