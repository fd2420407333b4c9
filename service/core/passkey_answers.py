"""What the service reads from a WebAuthn answer (``PublicKeyCredential.toJSON()``) before verifying it:
the credential id to look up, the challenge it claims to sign, the user handle and the transports.
Each reader takes anything and returns a harmless empty value for what is not of the right form; the
verification itself (core/passkeys.py, through py_webauthn) checks everything again."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import webauthn
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.structs import AuthenticatorTransport

_CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_-]{16,1366}")  # base64url of 12 to 1023 bytes (WebAuthn §5.8.3)
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def user_handle(user_id: str) -> bytes:
    """The WebAuthn user handle of a user: their random id, which says nothing about them (§14.6.1)."""
    return user_id.encode()


def credential_id_of(credential: Mapping[str, Any]) -> str:
    """The credential's id if it has the form of one, else ''."""
    value = credential.get("id")
    return value if isinstance(value, str) and _CREDENTIAL_ID.fullmatch(value) else ""


def claimed_challenge(credential: Mapping[str, Any]) -> str:
    """The challenge (base64url) the answer's clientDataJSON names, to find it in Redis; '' if none.
    Only a lookup key: the library checks it again against the stored one, with everything else."""
    response = credential.get("response")
    data = response.get("clientDataJSON") if isinstance(response, Mapping) else None
    if not isinstance(data, str) or len(data) > 8192:
        return ""
    try:
        challenge = json.loads(webauthn.base64url_to_bytes(data)).get("challenge")
    except (ValueError, TypeError, AttributeError, RecursionError):  # binascii.Error is a ValueError
        return ""
    return challenge if isinstance(challenge, str) and 0 < len(challenge) <= 128 else ""


def handle_matches(credential: Mapping[str, Any], user_id: str) -> bool:
    """A discoverable credential's assertion names its user (userHandle); it must be the owner's."""
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, Mapping) else None
    return handle in (None, "") or handle == bytes_to_base64url(user_handle(user_id))


def transports_of(credential: Mapping[str, Any]) -> tuple[str, ...]:
    response = credential.get("response")
    given = response.get("transports") if isinstance(response, Mapping) else None
    return tuple(t for t in given if t in _TRANSPORTS)[:8] if isinstance(given, list) else ()
