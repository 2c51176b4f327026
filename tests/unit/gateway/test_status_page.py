"""/status: the operator's page behind the admin token, its session cookie, its CSRF-checked
forms (pairing code with a QR code, revoke, logout), and every way it refuses."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
import segno
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN_TOKEN, Harness, error_code
from tests.support.node import World
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceError
from vitalchain.gateway.status import COOKIE, SESSION_S
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.logs import pseudonym
from vitalchain.vitals import Vital

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
CODE = re.compile(
    r'<p class="pairing-code" id="pairing-code">([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})</p>'
)


def browser(h: Harness, base_url: str = "http://testserver") -> TestClient:
    """A browser of its own on the harness's app: its own cookie jar, no redirects followed."""
    return TestClient(h.client.app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def tab(harness: Harness) -> Iterator[TestClient]:
    with browser(harness) as client:
        yield client


def refused_with(response: httpx.Response) -> str:
    """The code a refusal page names (``data-error-code``)."""
    found = re.search(r'data-error-code="([a-z_.]+)"', response.text)
    assert found, response.text
    return found.group(1)


def set_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookie.load(header)
    return cookie


def login(client: TestClient, token: str = ADMIN_TOKEN) -> str:
    """Sign in through the form; the CSRF token of the page it leads to."""
    r = client.post("/status/login", data={"token": token})
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/status"))


def csrf_of(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text
    tokens = set(CSRF.findall(page.text))
    assert len(tokens) == 1, "every form of a page carries its session's one CSRF token"
    return tokens.pop()


def patient() -> str:
    return PrivateKey.generate().address


# -- signing in ----------------------------------------------------------------------------------


def test_without_a_session_the_page_is_a_login_form(harness: Harness, tab: TestClient) -> None:
    device = harness.onboarded()
    r = tab.get("/status", headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 200
    assert '<html lang="en">' in r.text
    assert '<form method="post" action="/status/login">' in r.text
    assert '<label for="token">' in r.text
    assert 'id="token" name="token"' in r.text
    assert device.address not in r.text
    assert pseudonym(device.address) not in r.text
    assert "Devices" not in r.text
    assert 'name="csrf"' not in r.text
    assert not any(h.startswith("access-control-") for h in r.headers)  # no CORS
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none'
    assert r.headers["cache-control"] == "no-store"
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize("token", ["wrong-token-0123456789abcdef", "", ADMIN_TOKEN + "x"])
def test_a_wrong_token_is_refused_and_sets_no_cookie(tab: TestClient, token: str) -> None:
    r = tab.post("/status/login", data={"token": token})
    assert r.status_code == 401
    assert refused_with(r) == "unauthorized"
    assert "set-cookie" not in r.headers
    assert '<form method="post" action="/status/login">' in r.text  # try again
    assert "Devices" not in tab.get("/status").text


def test_the_right_token_gives_a_session_cookie_not_the_token(
    harness: Harness, tab: TestClient
) -> None:
    device = harness.onboarded()
    r = tab.post("/status/login", data={"token": ADMIN_TOKEN})
    assert r.status_code == 303
    assert r.headers["location"] == "/status"
    morsel = set_cookie(r)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/status"
    assert not morsel["secure"]  # served over http here (see the https test)
    assert int(morsel["max-age"]) == SESSION_S
    assert ADMIN_TOKEN not in morsel.value
    assert ADMIN_TOKEN.encode().hex() not in morsel.value

    page = tab.get("/status")
    assert page.status_code == 200
    health = {
        row: state
        for row, state in re.findall(
            r'<tr data-component="(\w+)">\s*<th scope="row">\w+</th>\s*'
            r'<td><span class="state [\w-]+">([\w ]+)</span>',
            page.text,
        )
    }
    assert health == {"chain": "up", "store": "up", "broker": "not monitored"}
    row = re.search(rf'<tr data-device="{device.address}">(.*?)</tr>', page.text, re.S)
    assert row, "the onboarded device is listed by its full address"
    assert f"<code>{pseudonym(device.address)}</code>" in row.group(1)
    assert ">active</span>" in row.group(1)
    assert f"group {harness.gateway.group_id}" in page.text
    assert '<th scope="col">Status</th>' in page.text


def test_the_cookie_is_secure_over_https(harness: Harness) -> None:
    with browser(harness, "https://testserver") as client:
        r = client.post("/status/login", data={"token": ADMIN_TOKEN})
        assert r.status_code == 303
        assert set_cookie(r)[COOKIE]["secure"] is True
        assert csrf_of(client.get("/status"))  # the browser sends it back over https


def test_an_admin_header_gets_a_read_only_page(harness: Harness, tab: TestClient) -> None:
    device = harness.onboarded()
    r = tab.get("/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200
    assert device.address in r.text
    assert 'name="csrf"' not in r.text
    assert "<form" not in r.text
    bad = tab.get("/status", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert bad.status_code == 401
    assert error_code(bad) == "unauthorized"
    assert device.address not in bad.text
    basic = tab.get("/status", headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
    assert basic.status_code == 401
    assert error_code(basic) == "unauthorized"


@pytest.mark.parametrize(
    "forge",
    [
        lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),  # another MAC
        lambda v: str(int(v.partition(".")[0]) + 3600) + "." + v.partition(".")[2],  # longer
        lambda v: ADMIN_TOKEN,  # the raw token is not a session
        lambda v: "garbage",
        lambda v: "1.zz.00",
        lambda v: "",
    ],
)
def test_a_forged_cookie_is_a_login_form_and_is_dropped(
    harness: Harness, forge: Callable[[str], str]
) -> None:
    with browser(harness) as client:
        r = client.post("/status/login", data={"token": ADMIN_TOKEN})
        value = set_cookie(r)[COOKIE].value
    with browser(harness) as client:
        client.cookies.set(COOKIE, forge(value), path="/status")
        page = client.get("/status")
        assert page.status_code == 200
        assert '<form method="post" action="/status/login">' in page.text
        assert 'name="csrf"' not in page.text
        if forge(value):
            assert set_cookie(page)[COOKIE]["max-age"] == "0"  # cleared


def test_a_session_ends_after_its_lifetime(fresh_harness: Harness) -> None:
    h = fresh_harness
    now = [1_900_000_000.0]
    h.gateway.clock = lambda: now[0]
    with browser(h) as client:
        csrf = login(client)
        now[0] += SESSION_S - 1
        assert csrf_of(client.get("/status")) == csrf
        now[0] += 1
        page = client.get("/status")
        assert '<form method="post" action="/status/login">' in page.text
        client.cookies.clear()


def test_logins_are_limited_per_client(fresh_harness: Harness) -> None:
    h = fresh_harness
    h.gateway.clock = lambda: 1_900_000_000.0  # no refill while the test runs
    with browser(h) as client:
        codes = [
            client.post("/status/login", data={"token": "wrong-token-0123456789"}).status_code
            for _ in range(h.gateway.settings.preauth_burst)
        ]
        assert set(codes) == {401}
        r = client.post("/status/login", data={"token": ADMIN_TOKEN})
        assert r.status_code == 429
        assert refused_with(r) == "too_many_requests"
        assert "set-cookie" not in r.headers


# -- the pairing code ----------------------------------------------------------------------------


def test_a_pairing_code_from_the_page_onboards_a_device(harness: Harness, tab: TestClient) -> None:
    csrf = login(tab)
    before = harness.gateway.state.counts()["enrolments"]
    owner = patient()
    r = tab.post(
        "/status/enrolments",
        data={
            "csrf": csrf,
            "patient": owner.lower(),
            "label": "ward 3 oximeter",
            "ttl_seconds": "600",
        },
    )
    assert r.status_code == 200, r.text
    found = CODE.search(r.text)
    assert found, r.text
    code = found.group(1)
    assert harness.gateway.state.counts()["enrolments"] == before + 1
    assert owner in r.text  # normalised to EIP-55, as the JSON route does
    # The QR code is segno's SVG of exactly the code shown, inline (no image fetched).
    assert "<svg" in r.text
    expected = segno.make_qr(code, error="m").svg_inline(
        scale=5, border=4, dark="#000", light="#fff"
    )
    assert expected.partition(" ")[2] in r.text
    assert f'aria-label="QR code of pairing code {code}"' in r.text
    assert csrf_of(r) == csrf  # the page it renders keeps the session's forms

    device = harness.device()
    device.onboard(code)
    assert harness.gateway.registry.status(device.address) is DeviceStatus.ACTIVE
    again = harness.device()  # the code was consumed: a second device is refused
    with pytest.raises(DeviceError) as refused:
        again.onboard(code)
    assert refused.value.code == "pairing_code_used"
    page = tab.get("/status")
    assert re.search(rf'<tr data-device="{device.address}">.*?>active</span>', page.text, re.S)
    assert code not in page.text  # shown once, on the answer to the form only


@pytest.mark.parametrize(
    ("form", "why"),
    [
        ({"patient": "0x1234"}, "patient"),
        ({"patient": "0x" + "aB" * 20}, "patient"),  # mixed case with a bad checksum
        ({"patient": ""}, "patient"),
        ({"ttl_seconds": "ten"}, "ttl_seconds"),
        ({"ttl_seconds": "59"}, "ttl_seconds"),
        ({"ttl_seconds": "86401"}, "ttl_seconds"),
        ({"ttl_seconds": "-5"}, "ttl_seconds"),
        ({"label": "x" * 101}, "label"),
    ],
)
def test_a_bad_enrolment_form_is_refused(
    harness: Harness, tab: TestClient, form: dict[str, str], why: str
) -> None:
    csrf = login(tab)
    before = harness.gateway.state.counts()["enrolments"]
    r = tab.post("/status/enrolments", data={"csrf": csrf, "patient": patient(), **form})
    assert r.status_code == 422
    assert refused_with(r) == "invalid_request"
    assert why in r.text
    assert not CODE.search(r.text)
    assert "<svg" not in r.text
    assert harness.gateway.state.counts()["enrolments"] == before


# -- CSRF and sessions on every form -------------------------------------------------------------


def _forms(harness: Harness) -> dict[str, dict[str, str]]:
    return {
        "/status/enrolments": {"patient": patient(), "ttl_seconds": "600"},
        "/status/revocations": {"device": harness.onboarded().address},
        "/status/logout": {},
    }


@pytest.mark.parametrize("action", ["/status/enrolments", "/status/revocations", "/status/logout"])
@pytest.mark.parametrize("csrf", ["missing", "empty", "another session's", "altered"])
def test_a_form_without_its_csrf_token_is_refused(
    harness: Harness, tab: TestClient, action: str, csrf: str
) -> None:
    mine = login(tab)
    with browser(harness) as other:
        theirs = login(other)
    fields = _forms(harness)[action]
    token = {
        "missing": None,
        "empty": "",
        "another session's": theirs,
        "altered": mine[:-1] + ("0" if mine[-1] != "0" else "1"),
    }[csrf]
    before = harness.gateway.state.counts()["enrolments"]
    data = fields if token is None else {**fields, "csrf": token}
    r = tab.post(action, data=data)
    assert r.status_code == 403
    assert refused_with(r) == "csrf_failed"
    assert "set-cookie" not in r.headers
    # Nothing happened: no code, the device still active, the session still open.
    assert harness.gateway.state.counts()["enrolments"] == before
    assert not CODE.search(r.text)
    if "device" in fields:
        assert harness.gateway.registry.status(fields["device"]) is DeviceStatus.ACTIVE
    assert csrf_of(tab.get("/status")) == mine


@pytest.mark.parametrize("action", ["/status/enrolments", "/status/revocations", "/status/logout"])
def test_a_form_without_a_session_is_refused(harness: Harness, action: str) -> None:
    with browser(harness) as signed_in:
        csrf = login(signed_in)
    fields = _forms(harness)[action]
    before = harness.gateway.state.counts()["enrolments"]
    with browser(harness) as stranger:  # the CSRF token alone is not a session
        r = stranger.post(action, data={**fields, "csrf": csrf})
    assert r.status_code == 401
    assert refused_with(r) == "unauthorized"
    assert harness.gateway.state.counts()["enrolments"] == before
    if "device" in fields:
        assert harness.gateway.registry.status(fields["device"]) is DeviceStatus.ACTIVE
    # Nor does the admin header stand in for a session on a form.
    with browser(harness) as scripted:
        r = scripted.post(action, data=fields, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 401
    assert refused_with(r) == "unauthorized"


# -- revoking ------------------------------------------------------------------------------------


def test_a_device_revoked_from_the_page_is_revoked_on_chain(
    harness: Harness, tab: TestClient
) -> None:
    device, kept = harness.onboarded(), harness.onboarded()
    csrf = login(tab)
    r = tab.post("/status/revocations", data={"csrf": csrf, "device": device.address.lower()})
    assert r.status_code == 200, r.text
    assert f"Device {pseudonym(device.address)} was revoked on chain" in r.text
    assert harness.gateway.registry.status(device.address) is DeviceStatus.REVOKED
    assert harness.ledger.device(device.address).status is DeviceStatus.REVOKED
    assert harness.gateway.registry.status(kept.address) is DeviceStatus.ACTIVE
    row = re.search(rf'<tr data-device="{device.address}">(.*?)</tr>', r.text, re.S)
    assert row
    assert ">revoked</span>" in row.group(1)
    assert "/status/revocations" not in row.group(1)  # no button for a revoked device
    kept_row = re.search(rf'<tr data-device="{kept.address}">(.*?)</tr>', r.text, re.S)
    assert kept_row
    assert ">active</span>" in kept_row.group(1)

    again = tab.post("/status/revocations", data={"csrf": csrf, "device": device.address})
    assert again.status_code == 409
    assert refused_with(again) == "trust_groups.device_already_revoked"


@pytest.mark.parametrize("device", ["", "0x1234", "0x" + "aB" * 20, "not an address"])
def test_revoking_a_malformed_address_is_refused(tab: TestClient, device: str) -> None:
    csrf = login(tab)
    r = tab.post("/status/revocations", data={"csrf": csrf, "device": device})
    assert r.status_code == 422
    assert refused_with(r) == "invalid_request"


# -- logging out ---------------------------------------------------------------------------------


def test_logout_clears_the_cookie_and_ends_the_session(harness: Harness, tab: TestClient) -> None:
    csrf = login(tab)
    value = tab.cookies.get(COOKIE)
    assert value
    r = tab.post("/status/logout", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/status"
    cleared = set_cookie(r)[COOKIE]
    assert cleared.value == ""
    assert cleared["max-age"] == "0"
    assert cleared["httponly"] is True
    assert cleared["path"] == "/status"
    assert COOKIE not in tab.cookies
    assert '<form method="post" action="/status/login">' in tab.get("/status").text
    # A copy of the cookie kept elsewhere no longer works either.
    with browser(harness) as copy:
        copy.cookies.set(COOKIE, value, path="/status")
        assert 'name="csrf"' not in copy.get("/status").text
        r = copy.post("/status/enrolments", data={"csrf": csrf, "patient": patient()})
        assert r.status_code == 401
        assert refused_with(r) == "unauthorized"


# -- anchors, on a whole node --------------------------------------------------------------------


def test_a_node_shows_its_anchors_and_their_lag(world: World) -> None:
    patient_key = world.patient()
    device = world.device(patient_key)
    for value in (97.0, 96.0, 95.0, 97.0):  # four messages: a block (max_readings=4)
        device.send(device.prepare([(Vital.SPO2, value)]))
    world.running.sealer.tick()
    gateway = world.running.gateway
    wait_for(lambda: gateway.store.anchors(gateway.group_id), "the anchor recorded")
    assert world.running.health is not None
    world.running.health.probe_once()
    with TestClient(world.client.app, follow_redirects=False) as tab:
        login(tab)
        page = tab.get("/status").text
    facts = dict(re.findall(r'<dd data-fact="(\w+)">([^<]*)', page))
    assert facts["log_size"] == "1"
    assert facts["anchored_size"] == "1"
    assert facts["unanchored"] == "0"
    assert re.fullmatch(r"\d+\.\d s", facts["lag_s"])
    assert "queued" in facts["outbox"]
    assert '<table id="anchors">' in page
    anchor = gateway.store.anchors(gateway.group_id)[-1]
    assert anchor.root.hex()[:16] in page
    assert anchor.tx_hash.hex()[:16] in page
    assert 'data-component="outbox"' in page
    assert "Sealing: no patient or step failing." in page
    assert patient_key.address not in page  # a device page, not a patient list


def test_the_page_is_not_part_of_the_api_schema(harness: Harness) -> None:
    paths = harness.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/status")]
    assert "/metrics" in paths  # the schema is there, without the page
