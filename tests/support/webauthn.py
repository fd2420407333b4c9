"""Passkeys in Chromium: a virtual authenticator on a page (Chrome DevTools Protocol, ``WebAuthn.*``),
the service served on http://localhost (an IP address cannot be a WebAuthn RP ID) with passkey settings
naming that origin, and page scripts that run a ceremony by hand and return its JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiohttp import web
from playwright.async_api import CDPSession, Page

from service.clock import SettableClock
from service.settings import Settings
from service.web.app import create_app
from tests.support.ports import free_port

AUTHENTICATOR = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
                 "isUserVerified": True, "automaticPresenceSimulation": True}


@dataclasses.dataclass
class Authenticator:
    """A virtual authenticator attached to one page."""

    cdp: CDPSession
    id: str

    async def credentials(self) -> list[dict[str, Any]]:
        return list((await self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id}))["credentials"])

    async def add(self, credential: dict[str, Any]) -> None:
        await self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.id, "credential": credential})


async def virtual_authenticator(page: Page) -> Authenticator:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    return Authenticator(cdp, added["authenticatorId"])


@dataclasses.dataclass
class PasskeyService:
    """The service on http://localhost:<port>, with [passkeys] origins naming exactly that origin."""

    base: str
    port: int
    settings: Settings
    app: web.Application

    def url(self, path: str) -> str:
        return self.base + path


async def serve_passkeys(aiohttp_server: Any, make_settings: Callable[..., Settings], clock: SettableClock, *,
                         port: int | None = None, settings: Settings | None = None) -> PasskeyService:
    """Bound to 127.0.0.1 only; Chromium resolves ``localhost`` there itself."""
    port = port or free_port()
    chosen = settings or make_settings(passkeys={"rp_id": "localhost", "origins": f"http://localhost:{port}"})
    app = create_app(chosen, clock=clock)
    await aiohttp_server(app, host="127.0.0.1", port=port)
    return PasskeyService(f"http://localhost:{port}", port, chosen, app)


# A sign-in assertion made by hand in the page: ``[options]`` is the JSON the options endpoint answered
# (anyone's: the test may carry it from another service). Returns PublicKeyCredential.toJSON().
ASSERT = """async ([options]) => {
  const credential = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  return credential.toJSON();
}"""

# The page's own ceremony, step by step: options from ``optionsUrl``, the assertion, and its JSON.
OWN_ASSERTION = """async ([optionsUrl]) => {
  const response = await fetch(optionsUrl, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'});
  const options = await response.json();
  const credential = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  return credential.toJSON();
}"""

# POST JSON from the page (same origin, its cookies), as passkeys.js does: status and body.
POST_JSON = """async ([url, body]) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const headers = {'Content-Type': 'application/json', 'Accept': 'application/json'};
  if (meta) headers['X-CSRF-Token'] = meta.content;
  const response = await fetch(url, {method: 'POST', headers, body: JSON.stringify(body)});
  const type = response.headers.get('content-type') || '';
  return {status: response.status, body: type.includes('json') ? await response.json() : null};
}"""
