"""The portal's edge: the printed login token, the session cookie, CSRF, hosts, headers."""

from __future__ import annotations

from tests.support.node import World
from tests.support.portal import BASE_URL, TOKEN, csrf_of, portal_client, portal_of
from vitalchain.portal.core import Role


def test_the_printed_token_signs_in_and_is_dropped_from_the_address(world: World) -> None:
    portal = portal_of(world, world.provider())
    with portal_client(portal, sign_in=False) as client:
        response = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/"  # the token leaves the address bar
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert TOKEN not in cookie
        landing = client.get("/", follow_redirects=False)
        assert landing.headers["location"] == "/inbox"


def test_a_request_without_the_token_is_sent_to_sign_in(world: World) -> None:
    portal = portal_of(world, world.provider())
    with portal_client(portal, sign_in=False) as client:
        for path in ("/", "/inbox"):  # each view's own tests check its pages too
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/login"
        wrong = client.get("/?token=not-the-token", follow_redirects=False)
        assert wrong.status_code == 401
        assert "unauthorized" in wrong.text
        assert "set-cookie" not in wrong.headers or "Max-Age=0" in wrong.headers["set-cookie"]


def test_a_form_without_its_csrf_token_is_refused(world: World) -> None:
    portal = portal_of(world, world.patient(), Role.PATIENT)
    with portal_client(portal) as client:
        page = client.get("/login")
        csrf = csrf_of(page.text)  # the sign-out form of a signed-in page
        refused = client.post("/logout", data={"csrf": "0" * 64})
        assert refused.status_code == 403
        assert "csrf_failed" in refused.text
        missing = client.post("/logout", data={})
        assert missing.status_code == 403
        assert (
            client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        )
        # signed out: the same cookie no longer opens a page
        assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_only_loopback_host_names_are_served(world: World) -> None:
    """A page reached through another name (DNS rebinding) is refused before any view."""
    portal = portal_of(world, world.provider())
    with portal_client(portal) as client:
        response = client.get("/login", headers={"host": "evil.example:8800"})
        assert response.status_code == 400
        assert client.get("/login", headers={"host": "localhost:8800"}).status_code == 200


def test_pages_carry_a_csp_and_no_cors(world: World) -> None:
    portal = portal_of(world, world.provider())
    with portal_client(portal) as client:
        response = client.get("/login", headers={"origin": "http://evil.example"})
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options(
            "/logout",
            headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        assert BASE_URL.startswith("http://127.0.0.1")
