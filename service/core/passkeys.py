"""Passkeys (WebAuthn Level 3 through py_webauthn): registering them, signing in and stepping up with
them, listing and removing them, with no HTTP in sight.

Every ceremony's challenge is single-use and bound to what asked for it: a sign-in's to the login nonce
(before there is a session), a registration's and a step-up's to the session (storage/passkeys.py).
Whatever is wrong with an answer — malformed, another origin or RP ID, a replayed or unknown
challenge, an unknown credential, a bad signature, a cloned authenticator — it gets one answer:
:class:`PasskeyRefused` for a sign-in, one :class:`InvalidInput` message otherwise; never a 500.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import webauthn
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..clock import Clock
from ..errors import InvalidInput, NotFound, PasskeyRefused
from ..metrics import Counts
from ..settings import Settings
from ..storage.passkeys import Passkey, PasskeyStore
from ..storage.users import User, passkeys_field
from .access_tokens import AccessClaims
from .auth import Authenticator, Client, Issued
from .passkey_answers import claimed_challenge, credential_id_of, handle_matches, transports_of, user_handle

log = logging.getLogger("service.security")

_NAME_LENGTH = 64
_REGISTRATION_FAILED = "That passkey could not be registered. Try again."
_STEP_UP_FAILED = "That passkey could not confirm it is you."


class Passkeys:
    """The passkey ceremonies of :class:`Authenticator`'s users."""

    def __init__(self, auth: Authenticator, store: PasskeyStore, settings: Settings, clock: Clock, *,
                 metrics: Counts | None = None) -> None:
        self._auth = auth
        self._store = store
        self._rp_id = settings.passkeys.rp_id
        self._rp_name = settings.rp_name
        self._origins = settings.passkeys.allowed_origins
        self._ttl = float(settings.passkeys.challenge_ttl)
        self._clock = clock
        self._metrics = metrics or Counts()

    # Sign-in: usernameless (discoverable credentials), the challenge bound to the login nonce.

    async def sign_in_options(self, nonce: str) -> str:
        """The options (JSON) for ``navigator.credentials.get``: no allowCredentials, so any passkey
        of this site will do, and the user is verified (a passkey is the only factor)."""
        challenge = secrets.token_bytes(32)
        await self._store.issue(self._store.login_key(nonce, bytes_to_base64url(challenge)), challenge, self._ttl)
        options = webauthn.generate_authentication_options(
            rp_id=self._rp_id, challenge=challenge, timeout=self._timeout_ms,
            user_verification=UserVerificationRequirement.REQUIRED)
        return webauthn.options_to_json(options)

    async def sign_in(self, nonce: str, credential: Mapping[str, Any], client: Client, *, remember: bool) -> Issued:
        """Verify an assertion against the nonce's challenge and start a session for its passkey's owner.

        Raises:
            PasskeyRefused: for every cause alike (see the module docstring).
        """
        claimed = claimed_challenge(credential)
        challenge = await self._store.take(self._store.login_key(nonce, claimed)) if nonce and claimed else None
        credential_id = credential_id_of(credential)
        owner = await self._store.owner(credential_id) if credential_id else None
        user = await self._auth.users.get(owner) if owner else None
        passkey = await self._store.get(user.id, credential_id) if user else None
        if challenge is None or user is None or passkey is None or user.disabled:
            raise self._refused(user, "unknown" if challenge else "challenge", client)
        if not handle_matches(credential, user.id):
            raise self._refused(user, "user_handle", client)
        problem = await self._verified_use(user.id, passkey, credential, challenge)
        if problem:
            raise self._refused(user, problem, client)
        issued = await self._auth.start_session(user, client, None, method="passkey", remember=remember)
        self._metrics.factor("passkey", "success")
        self._auth.counted_login(user.id, issued, "passkey")  # the "login" event, reason "passkey"
        return issued

    def _refused(self, user: User | None, reason: str, client: Client) -> PasskeyRefused:
        self._metrics.factor("passkey", "failure")
        log.info("passkey_failed", extra={"event": "passkey_failed", "reason": reason, "ip": client.ip,
                                          **({"user": user.id} if user else {})})
        return PasskeyRefused()

    async def _verified_use(self, user_id: str, passkey: Passkey, credential: Mapping[str, Any],
                            challenge: bytes) -> str | None:
        """Check the assertion's signature, origin, RP ID, challenge and user verification, then move
        the sign counter (storage USE). Returns what failed, or None."""
        verified = self._verify_assertion(credential, challenge, passkey)
        if verified is None:
            return "signature"
        used = await self._store.use(user_id, passkey.id, verified.new_sign_count, backed_up=verified.credential_backed_up,
                                     now=self._clock())
        if used == 0:
            self._metrics.factor("passkey", "counter_regression")
            log.warning("passkey_counter_regression", extra={
                "event": "passkey_counter_regression", "user": user_id, "count": verified.new_sign_count})
            return "counter_regression"
        return None if used == 1 else "unknown"

    def _verify_assertion(self, credential: Mapping[str, Any], challenge: bytes,
                          passkey: Passkey) -> VerifiedAuthentication | None:
        try:
            # The stored counter is checked by USE, after the signature: an unsigned counter proves nothing.
            return webauthn.verify_authentication_response(
                credential=dict(credential), expected_challenge=challenge, expected_rp_id=self._rp_id,
                expected_origin=self._origins, credential_public_key=webauthn.base64url_to_bytes(passkey.public_key),
                credential_current_sign_count=0, require_user_verification=True)
        except Exception:  # noqa: BLE001 - the library parses attacker bytes; any failure is a refusal
            return None

    # Registration and removal: a signed-in user, who authenticated recently.

    async def registration_options(self, claims: AccessClaims) -> str:
        """Options (JSON) for ``navigator.credentials.create``: a discoverable credential, the user
        verified, no attestation, none of the user's passkeys again.

        Raises:
            StepUpRequired: the session's last authentication is not recent.
        """
        self._auth.require_recent(claims)
        challenge = secrets.token_bytes(32)
        await self._store.issue(self._session_key(claims, "register", bytes_to_base64url(challenge)), challenge,
                                self._ttl)
        options = webauthn.generate_registration_options(
            rp_id=self._rp_id, rp_name=self._rp_name, user_name=claims.username, user_id=user_handle(claims.user_id),
            user_display_name=claims.username, challenge=challenge, timeout=self._timeout_ms,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED, require_resident_key=True,
                user_verification=UserVerificationRequirement.REQUIRED),
            exclude_credentials=_descriptors(await self._store.of_user(claims.user_id)))
        return webauthn.options_to_json(options)

    async def register(self, claims: AccessClaims, credential: Mapping[str, Any], name: str) -> Passkey:
        """Verify an attestation against the session's challenge and store the passkey as ``name``
        (empty: "Passkey <n>").

        Raises:
            StepUpRequired: the session's last authentication is not recent.
            InvalidInput: the answer does not verify, the name is unusable, or the passkey is known.
        """
        self._auth.require_recent(claims)
        name = _checked_name(name)
        challenge = await self._take(claims, "register", credential)
        try:
            if challenge is None:
                raise ValueError("no challenge")
            verified = webauthn.verify_registration_response(
                credential=dict(credential), expected_challenge=challenge, expected_rp_id=self._rp_id,
                expected_origin=self._origins, require_user_verification=True)
        except Exception:  # noqa: BLE001 - the library parses attacker bytes; any failure is a refusal
            log.info("passkey_failed", extra={"event": "passkey_failed", "user": claims.user_id, "reason": "register"})
            raise InvalidInput(_REGISTRATION_FAILED) from None
        existing = await self._store.of_user(claims.user_id)
        passkey = Passkey(
            id=bytes_to_base64url(verified.credential_id), public_key=bytes_to_base64url(verified.credential_public_key),
            count=verified.sign_count, backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backed_up=verified.credential_backed_up, transports=transports_of(credential),
            name=name or f"Passkey {len(existing) + 1}", created=self._clock())
        if not await self._store.add(claims.user_id, passkey):
            raise InvalidInput("That passkey is registered already, or you have too many passkeys.")
        self._metrics.factor("passkey", "enrolled")
        log.info("passkey_registered", extra={"event": "passkey_registered", "user": claims.user_id,
                                              "sid": claims.session_id})
        return passkey

    async def of_user(self, user_id: str) -> list[Passkey]:
        return await self._store.of_user(user_id)

    async def rename(self, claims: AccessClaims, credential_id: str, name: str) -> None:
        """Raises:
            InvalidInput: the name is empty or unusable.
            NotFound: the user has no passkey of that id.
        """
        name = _checked_name(name)
        if not name:
            raise InvalidInput("Give the passkey a name.")
        if not await self._store.rename(claims.user_id, credential_id, name):
            raise NotFound("There is no such passkey.")

    async def remove(self, claims: AccessClaims, credential_id: str) -> int:
        """Remove one of the signed-in user's passkeys; every other session ends, as after a password
        change. Returns how many ended.

        Raises:
            StepUpRequired: the session's last authentication is not recent.
            NotFound: the user has no passkey of that id.
        """
        self._auth.require_recent(claims)
        return await self._remove(claims.user_id, credential_id, keep=claims.session_id, by="user")

    async def remove_for(self, user: User, credential_id: str) -> int:
        """An operator's removal (``users passkeys remove``): every session of the user ends."""
        return await self._remove(user.id, credential_id, keep=None, by="operator")

    async def _remove(self, user_id: str, credential_id: str, *, keep: str | None, by: str) -> int:
        if not await self._store.remove(user_id, credential_id):
            raise NotFound("There is no such passkey.")
        ended = await self._auth.sessions.revoke_all(user_id, keep=keep, user_fields=passkeys_field(self._clock()))
        self._auth.ended(user_id, ended)
        self._metrics.factor("passkey", "removed")
        log.info("passkey_removed", extra={"event": "passkey_removed", "user": user_id, "reason": by,
                                           "count": len(ended)})
        return len(ended)

    # Step-up: the signed-in user's own passkeys only.

    async def step_up_options(self, claims: AccessClaims) -> str:
        """Options (JSON) for a step-up: allowCredentials lists the signed-in user's passkeys.

        Raises:
            InvalidInput: the user has no passkey.
        """
        passkeys = await self._store.of_user(claims.user_id)
        if not passkeys:
            raise InvalidInput("You have no passkey yet.")
        challenge = secrets.token_bytes(32)
        await self._store.issue(self._session_key(claims, "step_up", bytes_to_base64url(challenge)), challenge,
                                self._ttl)
        options = webauthn.generate_authentication_options(
            rp_id=self._rp_id, challenge=challenge, timeout=self._timeout_ms, allow_credentials=_descriptors(passkeys),
            user_verification=UserVerificationRequirement.REQUIRED)
        return webauthn.options_to_json(options)

    async def step_up(self, claims: AccessClaims, credential: Mapping[str, Any]) -> Issued:
        """Confirm it is the user with one of their own passkeys; another user's is refused like an
        unknown one (the credential is looked up among the signed-in user's only).

        Raises:
            InvalidInput: for every cause alike.
            AuthenticationRequired: the session ended meanwhile.
        """
        challenge = await self._take(claims, "step_up", credential)
        credential_id = credential_id_of(credential)
        passkey = await self._store.get(claims.user_id, credential_id) if credential_id else None
        problem = "step_up"
        if challenge is not None and passkey is not None and handle_matches(credential, claims.user_id):
            problem = await self._verified_use(claims.user_id, passkey, credential, challenge) or ""
        if problem:
            self._metrics.factor("passkey", "failure")
            log.info("passkey_failed", extra={"event": "passkey_failed", "user": claims.user_id, "reason": problem})
            raise InvalidInput(_STEP_UP_FAILED)
        return await self._auth.stepped_up(claims, "passkey")

    def _session_key(self, claims: AccessClaims, purpose: str, challenge: str) -> str:
        return self._store.session_key(claims.user_id, claims.session_id, purpose, challenge)

    async def _take(self, claims: AccessClaims, purpose: str, credential: Mapping[str, Any]) -> bytes | None:
        """The session's challenge that the answer claims to sign, gone once read (a replay finds none)."""
        claimed = claimed_challenge(credential)
        return await self._store.take(self._session_key(claims, purpose, claimed)) if claimed else None

    @property
    def _timeout_ms(self) -> int:
        return int(self._ttl * 1000)


def _descriptors(passkeys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(p.id),
                                          transports=[AuthenticatorTransport(t) for t in p.transports])
            for p in passkeys]


def _checked_name(name: str) -> str:
    name = " ".join(name.split())
    if len(name) > _NAME_LENGTH or not name.isprintable():
        raise InvalidInput(f"A passkey's name is at most {_NAME_LENGTH} printable characters.")
    return name
