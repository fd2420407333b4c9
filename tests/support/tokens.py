"""Access tokens signed by hand with PyJWT's algorithm objects, so that a test can forge exactly the
header or payload it attacks (``jwt.encode`` refuses some hostile headers), and base64url both ways."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt

from service.core.access_tokens import TOKEN_TYPE
from service.core.keyring import SigningKey

DROP = object()  # a header field or claim left out of a hand-made token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hand_made(header: dict[str, Any], payload: dict[str, Any] | bytes, signer: Callable[[bytes], bytes]) -> str:
    """A compact JWS of ``header`` and ``payload`` (JSON, or raw bytes as they are) signed by ``signer``."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(json.dumps(header).encode()) + "." + b64(body)
    return signing_input + "." + b64(signer(signing_input.encode()))


def forge_token(key: SigningKey, payload: dict[str, Any] | bytes, **header: Any) -> str:
    """A token signed with a real ``key`` under the header the service writes (``alg``, ``kid``,
    ``typ``), changed by ``header`` (DROP removes a field): only what the test changes is wrong."""
    fields = {"alg": key.algorithm, "kid": key.kid, "typ": TOKEN_TYPE, **header}
    fields = {name: value for name, value in fields.items() if value is not DROP}
    signer = jwt.get_algorithm_by_name(key.algorithm)
    return hand_made(fields, payload, lambda data: signer.sign(data, key.private))


def resign_token(token: str, key: SigningKey, **header: Any) -> str:
    """``token``'s own claims and header, signed by ``key`` under its ``kid`` and changed by ``header``:
    only the key and the header differ from a token the service issued."""
    payload = jwt.decode(token, options={"verify_signature": False})
    return forge_token(key, payload, **{**jwt.get_unverified_header(token), "kid": key.kid, **header})
