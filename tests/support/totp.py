"""An authenticator app on a settable clock: turning TOTP on through the JSON API, and the codes an app
would show at chosen times."""

from __future__ import annotations

from dataclasses import dataclass

import pyotp
from aiohttp.test_utils import TestClient

from service.clock import SettableClock

from .sign_in import PASSWORD, csrf_token

JSON = {"Accept": "application/json"}


@dataclass
class App:
    """The authenticator app of one user: its secret, and the recovery codes shown at enrolment."""

    secret: str
    recovery_codes: list[str]
    clock: SettableClock

    def code(self, *, at: float | None = None) -> str:
        return pyotp.TOTP(self.secret).at(self.clock() if at is None else at)

    def next_code(self) -> str:
        """A code for the next time step: the clock moves on 30 s, as a user waits for a new code."""
        self.clock.advance(30)
        return self.code()


async def enrol(client: TestClient, clock: SettableClock) -> App:
    """Turn TOTP on for the signed-in client's user, as a script on the account page would."""
    headers = {**JSON, "X-CSRF-Token": await csrf_token(client)}
    setup = await client.post("/api/totp/setup", headers=headers)
    assert setup.status == 200, await setup.text()
    secret = (await setup.json())["secret"]
    enabled = await client.post("/api/totp", json={"code": pyotp.TOTP(secret).at(clock())}, headers=headers)
    assert enabled.status == 200, await enabled.text()
    return App(secret, (await enabled.json())["recovery_codes"], clock)


async def password_step(client: TestClient, name: str = "alice", password: str | None = None, **extra: object) -> str:
    """The first step of a JSON sign-in with TOTP on: the pending sign-in's name (202, no cookies)."""
    response = await client.post("/login", json={"username": name, "password": password or PASSWORD, **extra})
    assert response.status == 202, await response.text()
    assert "Set-Cookie" not in response.headers
    return str((await response.json())["pending"])
