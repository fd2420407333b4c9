"""The public API, as an app that embeds the service uses it: ``import service`` and nothing deeper."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from aiohttp import web

import service
from tests.support.sign_in import PASSWORD


async def test_an_embedding_app_adds_pages_that_see_the_signed_in_user(settings, clock, make_client, make_user):
    async def reports(request: web.Request) -> web.StreamResponse:
        user = service.require_user(request)
        return web.json_response({"username": user.username, "user_id": user.user_id, "session": user.session_id,
                                  "csrf": service.csrf_token(request)})

    async def publish(request: web.Request) -> web.StreamResponse:
        return web.json_response({"published_by": service.require_user(request).username})

    app = service.create_app(settings, clock=clock)
    service.add_route(app, "GET", "/reports", reports, "reports")
    service.add_route(app, "POST", "/reports", publish, "reports")
    client = await make_client(app)
    user = await make_user("alice", PASSWORD)
    assert (await client.get("/reports", headers={"Accept": "application/json"})).status == 401

    signed_in = await (await client.post("/login", json={"username": "alice", "password": PASSWORD})).json()
    page = await (await client.get("/reports")).json()
    assert page == {"username": "alice", "user_id": user.id, "session": signed_in["session"],
                    "csrf": signed_in["csrf_token"]}
    # Unsafe methods on added routes need the CSRF token, as the service's own do.
    assert (await client.post("/reports")).status == 403
    answer = await client.post("/reports", headers={"X-CSRF-Token": page["csrf"]})
    assert answer.status == 200 and await answer.json() == {"published_by": "alice"}


def test_the_claims_type_has_the_documented_fields():
    """``require_user`` gives an AccessClaims; its name is ``.username`` (there is no ``.name``)."""
    fields = [field.name for field in dataclasses.fields(service.AccessClaims)]
    assert fields == ["user_id", "session_id", "username", "token_id", "issued_at", "expires_at", "auth_time"]


def test_every_exported_name_resolves_and_importing_the_package_loads_no_web_library():
    code = ("import sys, service; assert 'aiohttp' not in sys.modules, 'import service loaded aiohttp';"
            "[getattr(service, name) for name in service.__all__]; print(sorted(service.__all__))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "create_app" in result.stdout and "require_user" in result.stdout
