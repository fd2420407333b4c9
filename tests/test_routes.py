"""The route table: every answer goes through the request pipeline — added routes, 404s, 405s, HEAD
and static files included — and a route added around it stops the app from starting."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from service.web import routes
from service.web.app import create_app
from service.web.pipeline import require_user
from tests.support.sign_in import login


async def test_a_route_added_outside_the_pipeline_stops_the_app_from_starting(settings, clock, aiohttp_server):
    """Such a route would answer without authentication, CSRF checks or security headers."""
    app = create_app(settings, clock=clock)

    async def naked(request: web.Request) -> web.StreamResponse:
        return web.Response(text="no checks here")

    app.router.add_get("/naked", naked)
    try:
        await aiohttp_server(app, host="127.0.0.1")
    except RuntimeError as exc:
        assert "/naked" in str(exc) and "service.add_route" in str(exc)
    else:
        raise AssertionError("the app started with a route outside the pipeline")


async def test_a_route_added_with_routes_add_sees_the_user_and_gets_the_headers(settings, clock, make_client,
                                                                                make_user):
    app = create_app(settings, clock=clock)

    async def hello(request: web.Request) -> web.StreamResponse:
        return web.json_response({"hello": require_user(request).username})

    routes.add(app, "GET", "/hello", hello, "hello")
    client = await make_client(app)
    await make_user()
    assert (await client.get("/hello", headers={"Accept": "application/json"})).status == 401
    await login(client)
    response = await client.get("/hello")
    assert response.status == 200 and await response.json() == {"hello": "alice"}
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"]


async def test_a_known_path_with_another_method_is_405_with_allow(client):
    response = await client.put("/api/me")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_an_unknown_path_is_404_whatever_the_method(client):
    for method in ("GET", "POST", "DELETE"):
        response = await client.request(method, "/no/such/page", headers={"Accept": "application/json"})
        assert response.status == 404, method
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_head_is_answered_wherever_get_is(client):
    for path in ("/healthz", "/login", "/static/style.css"):
        response = await client.head(path)
        assert response.status == 200, path
        assert await response.read() == b""


async def test_static_serves_only_files_of_its_directory(client):
    assert (await client.get("/static/style.css")).status == 200
    for name in ("nothing.css", ".style.css", "style.css.bak", "STYLE.CSS"):  # ../ and %2e%2e: tests/security
        assert (await client.get(f"/static/{name}")).status == 404, name


async def test_a_static_file_answers_a_conditional_get_with_304(client):
    first = await client.get("/static/style.css")
    again = await client.get("/static/style.css", headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert again.status == 304


NAVIGATE_HTML = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html,application/xhtml+xml"}


@pytest.mark.parametrize(("method", "path", "status", "heading"), [
    ("GET", "/no/such/page", 404, "Page not found"),
    ("GET", "/static/no-such-file.css", 404, "Page not found"),
    ("PUT", "/api/me", 405, "Method not allowed"),
])
async def test_navigations_to_unknown_paths_or_methods_get_a_real_page(client, method, path, status, heading):
    response = await client.request(method, path, headers=NAVIGATE_HTML)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("text/html")
    page = await response.text()
    assert re.search(r'<html lang="en">', page)
    assert re.search(rf"<title>{heading} \(error {status}\) · Cookie sessions</title>", page)
    assert f"<h1>{heading}</h1>" in page and "<main" in page and 'href="/"' in page
    if status == 405:
        assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/no/such/page", 404, "not_found"), ("PUT", "/api/me", 405, "method_not_allowed")])
async def test_other_callers_get_json_for_unknown_paths_and_methods(client, method, path, status, code):
    response = await client.request(method, path, headers={"Sec-Fetch-Mode": "cors", "Accept": "*/*"})
    assert response.status == status
    body = await response.json()
    assert body["error"] == code and body["message"]
