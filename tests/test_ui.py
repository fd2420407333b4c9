"""What operators can change in the pages people see ([ui]): the site's name on every page, and
directories whose templates and static files replace the packaged ones of the same name."""

from __future__ import annotations

import re

import pytest

from service.errors import SettingsError

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}


def assert_branded(html: str, site_name: str) -> None:
    assert re.search(rf"<title>[^<]+ · {re.escape(site_name)}</title>", html)
    assert f'<a class="site-name" href="/">{site_name}</a>' in html


async def test_the_default_site_name_titles_the_login_page(client):
    assert_branded(await (await client.get("/login")).text(), "Cookie sessions")


async def test_site_name_titles_every_page_error_pages_included(make_client, make_settings):
    client = await make_client(of=make_settings(ui={"site_name": "Example <Intranet>"}))
    escaped = "Example &lt;Intranet&gt;"
    assert_branded(await (await client.get("/login")).text(), escaped)
    missing = await client.get("/no/such/page", headers=NAVIGATE)
    assert missing.status == 404
    html = await missing.text()
    assert_branded(html, escaped)
    assert f"Back to the start page of {escaped}" in html


async def test_operator_directories_replace_only_the_files_they_hold(make_client, make_settings, tmp_path):
    templates, static = tmp_path / "templates", tmp_path / "static"
    templates.mkdir()
    static.mkdir()
    (templates / "login.html").write_text('{% extends "base.html" %}{% block content %}<h1>Our own sign-in</h1>'
                                          '{% endblock %}')
    (static / "style.css").write_text("body { color: rebeccapurple; }")
    (static / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    client = await make_client(of=make_settings(ui={"templates_dir": str(templates), "static_dir": str(static)}))
    assert "Our own sign-in" in await (await client.get("/login")).text()
    assert "Page not found" in await (await client.get("/nope", headers=NAVIGATE)).text()  # packaged
    assert await (await client.get("/static/style.css")).text() == "body { color: rebeccapurple; }"
    assert (await client.get("/static/logo.svg")).status == 200  # a file of the operator's own
    assert (await client.get("/static/local-time.js")).status == 200  # packaged


@pytest.mark.parametrize("key", ["templates_dir", "static_dir"])
def test_an_override_directory_that_does_not_exist_stops_startup(make_settings, tmp_path, key):
    with pytest.raises(SettingsError) as info:
        make_settings(ui={key: str(tmp_path / "absent")})
    assert f"ui.{key}" in str(info.value) and "absent" in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\there"])
def test_a_site_name_that_cannot_title_a_page_stops_startup(make_settings, name):
    with pytest.raises(SettingsError, match="ui.site_name"):
        make_settings(ui={"site_name": name})
