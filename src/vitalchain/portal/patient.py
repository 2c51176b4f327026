"""The portal's patient views (issue 15, items 6-9): my devices, my consents, who accessed my
data, my alerts.

Why the devices come from the patient's own blocks: the chain's device records and events
(``DeviceAssociated``, ``DeviceRevoked``) carry no patient, and the gateway offers no
patient-signed list of a patient's devices (its ``/v1/ring`` lists the group's members for
anonymity, its status page is the operator's).  What names a patient's devices is what only
the patient can read: the device of every message in their blocks, fetched as ciphertext with
the SDK and decrypted here.  A device that has sent nothing sealed yet is not shown.

Why consents are read back from the chain after every change: the page confirms what the
chain holds (the transaction's hash and block), not what the form asked for.  Every check a
form can fail (address, vitals, expiry, a registered provider) runs before anything is sent,
so a refused form leaves no transaction behind.

The routes only parse and render; the classes and functions below are the views' logic.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from vitalchain.errors import VitalchainError
from vitalchain.ledger import ConsentStatus, DeviceStatus, Ledger, TxResult
from vitalchain.ledger.events import (
    ACCESS_REQUESTED,
    BREAK_GLASS_ACCESSED,
    CONSENT_DENIED,
    CONSENT_GRANTED,
    CONSENT_REVOKED,
    DEVICE_ASSOCIATED,
    DEVICE_REVOKED,
    Event,
    EventName,
)
from vitalchain.logs import pseudonym, safe_error
from vitalchain.portal.core import GatewayLink, Portal, PortalError
from vitalchain.portal.web import Text, Web
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.sdk.subscriber import AlertClient
from vitalchain.vitals import Vital
from vitalchain.wire.address import parse_address

__all__ = [
    "ACCESS_EVENTS",
    "ALERTS_SINCE_S",
    "FETCHES_NOT_REPORTED",
    "STALE_AFTER_S",
    "AccessRow",
    "AlertRow",
    "ConsentRow",
    "DeviceRow",
    "Grant",
    "MyDevices",
    "access_log",
    "consents",
    "grant",
    "my_alerts",
    "parse_grant",
    "revoke",
    "router",
    "scope_names",
]

# A device silent for longer than this is flagged stale: the gateway's own default for its
# ``device_stale`` warning (alert_stale_warning_s, docs/spec/alert.md), so the page and the
# technical alarm agree on what "stale" means.
STALE_AFTER_S = 15 * 60
# How far back "My alerts" lists (the gateway keeps each delivery; a week fits one page).
ALERTS_SINCE_S = 7 * 24 * 3600
# What "Who accessed my data" says of fetches: the store checks consent at every fetch but
# keeps no log of them that a patient could read (vitalchain/access/service.py).
FETCHES_NOT_REPORTED = "the gateway does not report fetches"
ACCESS_EVENTS: tuple[EventName, ...] = (
    BREAK_GLASS_ACCESSED,
    CONSENT_GRANTED,
    CONSENT_REVOKED,
    CONSENT_DENIED,
    ACCESS_REQUESTED,
)
_EVENT_LABELS = {
    BREAK_GLASS_ACCESSED.name: "Emergency (break-glass) access",
    CONSENT_GRANTED.name: "Consent granted",
    CONSENT_REVOKED.name: "Consent revoked",
    CONSENT_DENIED.name: "Request denied",
    ACCESS_REQUESTED.name: "Access requested",
}
_BY_SHORT = {v.info.short: v for v in Vital}
_STATUS_LABELS = {
    ConsentStatus.NONE: "no consent",  # e.g. a provider who used break-glass only
    ConsentStatus.REQUESTED: "requested",
    ConsentStatus.GRANTED: "granted",
    ConsentStatus.DENIED: "denied",
    ConsentStatus.REVOKED: "revoked",
}
_DAY = dt.timedelta(days=1)


# -- shared --------------------------------------------------------------------------------------


def utc(seconds: float) -> str:
    """A moment as the page shows it: UTC, to the second (the server cannot know the browser's
    zone without a script, and the portal's pages have none)."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(seconds: float) -> str:
    """The same moment for a ``<time datetime>`` attribute."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def until(seconds: float) -> str:
    """An expiry as the grant form set it: a midnight UTC is "the end of" the day before."""
    if seconds % 86400 == 0:
        day = dt.datetime.fromtimestamp(seconds, dt.UTC).date() - _DAY
        return f"end of {day.isoformat()} (UTC)"
    return utc(seconds)


def ago(seconds: float) -> str:
    """A duration in the largest unit that fits: "42 s", "7 min", "3 h", "2 d"."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def scope_names(scope: int) -> list[str]:
    """The vitals of a consent scope bitmask, as people name them."""
    return [v.info.label for v in Vital if scope & v.bit]


@dataclass(frozen=True, slots=True)
class Problem:
    """A gateway that could not answer a view; the page names it and its code."""

    url: str
    code: str


def _problem(link: GatewayLink, exc: BaseException) -> Problem:
    code = exc.code if isinstance(exc, VitalchainError) and exc.code else safe_error(exc)
    return Problem(link.url, code)


class _BlockTimes:
    """Block timestamps, each read once (an event carries its block, not its time)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._times: dict[int, int] = {}
        self._lock = threading.Lock()

    def of(self, number: int) -> int:
        with self._lock:
            found = self._times.get(number)
        if found is None:
            found = self.ledger.timestamp(number)
            with self._lock:
                self._times[number] = found
        return found


# -- 6. my devices ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRow:
    address: str
    pseudonym: str
    group_id: int | None  # None: the chain has no record of it
    status: str  # "associated", "revoked" or "unknown"
    associated_block: int | None
    revoked_block: int | None
    last_reading: float | None  # the device's clock, seconds
    last_reading_text: str
    last_reading_iso: str
    age: str
    readings: int
    stale: bool


@dataclass
class _Seen:
    """What the portal has read of one gateway's blocks for the patient, so each page load
    asks only for the blocks after the last one it read."""

    last_number: int = 0
    last_ms: dict[str, int] = field(default_factory=dict)  # device -> its latest reading
    counts: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0  # blocks that did not decrypt or verify


class MyDevices:
    """The patient's devices, from the devices named in their own blocks and the chain's
    device records and events."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def refresh(self, link: GatewayLink) -> _Seen:
        """Fetch and decrypt the patient's blocks after the last one read from ``link``."""
        portal = self.portal
        with self._lock:
            seen = self._seen.setdefault(link.url, _Seen())
            try:
                fetched = portal.reader(link).fetch(
                    link.group_id, portal.me, after_number=seen.last_number
                )
            except VitalchainError as exc:
                if exc.code != "unknown_block":  # none (yet, or new): nothing to add
                    raise
                fetched = []
            for item in fetched:
                seen.last_number = max(seen.last_number, item.block.number)
                try:
                    readings = item.readings(portal.key)
                except VitalchainError:
                    seen.unreadable += 1
                    continue
                for device, reading in readings:
                    seen.counts[device] = seen.counts.get(device, 0) + 1
                    seen.last_ms[device] = max(seen.last_ms.get(device, 0), reading.t_ms)
            return seen

    def rows(self) -> tuple[list[DeviceRow], list[Problem], int]:
        """Every device of the patient's blocks (newest reading first), the gateways that
        failed, and how many blocks could not be read."""
        last: dict[str, int] = {}
        counts: dict[str, int] = {}
        problems: list[Problem] = []
        unreadable = 0
        for link in self.portal.gateways:
            try:
                seen = self.refresh(link)
            except Exception as exc:  # one gateway down must not hide the others
                problems.append(_problem(link, exc))
                continue
            unreadable += seen.unreadable
            for device, at in seen.last_ms.items():
                last[device] = max(last.get(device, 0), at)
                counts[device] = counts.get(device, 0) + seen.counts[device]
        rows = [self._row(device, last[device] / 1000, counts[device]) for device in last]
        rows.sort(key=lambda r: -(r.last_reading or 0))
        return rows, problems, unreadable

    def _row(self, address: str, last: float, count: int) -> DeviceRow:
        ledger = self.portal.ledger
        record = ledger.device(address)
        associated = ledger.events.query(DEVICE_ASSOCIATED.name, device=address)
        revoked = ledger.events.query(DEVICE_REVOKED.name, device=address)
        status = {
            DeviceStatus.ACTIVE: "associated",
            DeviceStatus.REVOKED: "revoked",
        }.get(record.status, "unknown")
        age = self.portal.clock() - last
        return DeviceRow(
            address=address,
            pseudonym=pseudonym(address),
            group_id=record.group_id if record.status is not DeviceStatus.NONE else None,
            status=status,
            associated_block=associated[-1].block_number if associated else None,
            revoked_block=revoked[-1].block_number if revoked else None,
            last_reading=last,
            last_reading_text=utc(last),
            last_reading_iso=iso(last),
            age=ago(age),
            readings=count,
            stale=status == "associated" and age > STALE_AFTER_S,
        )


# -- 7. my consents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentRow:
    provider: str
    pseudonym: str
    status: str
    vitals: list[str]
    expires_at: int  # 0: none
    expires_text: str
    expired: bool
    break_glass_until: int
    break_glass_text: str
    revocable: bool


def consents(portal: Portal) -> list[ConsentRow]:
    """Each provider's consent record of the patient, as the chain holds it now."""
    ledger = portal.ledger
    now = ledger.timestamp()  # expiry is the chain's judgement, in chain time
    rows = []
    for provider in ledger.providers_of(portal.me):
        consent = ledger.consent_of(portal.me, provider)
        granted = consent.status is ConsentStatus.GRANTED
        glass = consent.break_glass_until if consent.break_glass_until > now else 0
        rows.append(
            ConsentRow(
                provider=provider,
                pseudonym=pseudonym(provider),
                status=_STATUS_LABELS[consent.status],
                vitals=scope_names(consent.scope),
                expires_at=consent.expires_at,
                expires_text=until(consent.expires_at) if consent.expires_at else "",
                expired=granted and consent.expires_at <= now,
                break_glass_until=glass,
                break_glass_text=utc(glass) if glass else "",
                revocable=granted,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant form, checked: who, which vitals (a scope bitmask), until when (Unix s)."""

    provider: str
    scope: int
    expires_at: int


def _address(text: str) -> str:
    try:
        return parse_address(text.strip())
    except ValueError as exc:
        raise PortalError("invalid_request", f"provider address: {exc}") from None


def parse_grant(portal: Portal, provider: str, vitals: Iterable[str], expires: str) -> Grant:
    """The grant form's fields checked before anything is sent: a well-formed address (mixed
    case must be a valid EIP-55 checksum), a registered provider, at least one known vital,
    and an expiry date in the future (the consent holds until the end of that day, UTC)."""
    address = _address(provider)
    scope = 0
    for name in vitals:
        vital = _BY_SHORT.get(name)
        if vital is None:
            raise PortalError("unknown_vital", "choose vitals from the list")
        scope |= vital.bit
    if not scope:
        raise PortalError("invalid_request", "choose at least one vital to share")
    try:
        day = dt.date.fromisoformat(expires.strip())
    except ValueError:
        raise PortalError("invalid_time", "the expiry is a date (YYYY-MM-DD)") from None
    end = dt.datetime.combine(day + _DAY, dt.time(), dt.UTC) if day < dt.date.max else None
    if end is None:
        raise PortalError("invalid_time", "the expiry is too far in the future")
    expires_at = int(end.timestamp())
    now = max(portal.clock(), portal.ledger.timestamp())
    if expires_at <= now:
        raise PortalError("invalid_time", f"the expiry {day.isoformat()} is in the past")
    if not portal.ledger.is_provider(address):
        raise PortalError("not_found", f"{address} is not a registered provider")
    return Grant(address, scope, expires_at)


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A consent change as the chain confirmed it."""

    action: str  # "granted" or "revoked"
    provider: str
    pseudonym: str
    tx_hash: str
    block_number: int
    status: str  # the consent's status read back from the chain afterwards


def _confirmed(portal: Portal, action: str, provider: str, tx: TxResult) -> Confirmation:
    status = portal.ledger.consent_of(portal.me, provider).status
    return Confirmation(
        action, provider, pseudonym(provider), "0x" + tx.tx_hash.hex(), tx.block_number,
        _STATUS_LABELS[status],
    )  # fmt: skip


def grant(portal: Portal, checked: Grant) -> Confirmation:
    """Send the grant under the patient's key; returns once it is in a block."""
    tx = portal.ledger.grant(portal.key, checked.provider, checked.scope, checked.expires_at)
    return _confirmed(portal, "granted", checked.provider, tx)


def revoke(portal: Portal, provider: str) -> Confirmation:
    """Revoke ``provider``'s grant (refused before sending if there is none)."""
    address = _address(provider)
    if portal.ledger.consent_of(portal.me, address).status is not ConsentStatus.GRANTED:
        raise PortalError("not_found", f"{address} holds no consent of yours to revoke")
    tx = portal.ledger.revoke(portal.key, address)
    return _confirmed(portal, "revoked", address, tx)


# -- 8. who accessed my data ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRow:
    event: str  # the contract event's name
    label: str
    provider: str
    pseudonym: str
    block_number: int
    tx_hash: str
    at: int
    at_text: str
    at_iso: str
    details: str


def _details(event: Event) -> str:
    args = event.args
    vitals = ", ".join(scope_names(int(args.get("scope", 0)))) or "no vitals"
    if event.name == BREAK_GLASS_ACCESSED.name:
        return (
            f"{vitals}; reason code {args['reasonCode']} (reason hash "
            f"0x{bytes(args['reasonHash']).hex()}); until {utc(int(args['expiresAt']))}"
        )
    if event.name == CONSENT_GRANTED.name:
        return f"{vitals}; until {until(int(args['expiresAt']))}"
    if event.name == ACCESS_REQUESTED.name:
        return vitals
    return ""


def access_log(portal: Portal, times: _BlockTimes | None = None) -> list[AccessRow]:
    """The chain's events about the patient's data, newest first: break-glass accesses and
    every consent change (requests, grants, denials, revocations)."""
    times = times or _BlockTimes(portal.ledger)
    events = [
        event
        for name in ACCESS_EVENTS
        for event in portal.ledger.events.query(name.name, patient=portal.me)
    ]
    events.sort(key=lambda e: (e.block_number, e.log_index), reverse=True)
    rows = []
    for event in events:
        at = times.of(event.block_number)
        provider = str(event.args["provider"])
        rows.append(
            AccessRow(
                event=event.name,
                label=_EVENT_LABELS[event.name],
                provider=provider,
                pseudonym=pseudonym(provider),
                block_number=event.block_number,
                tx_hash="0x" + event.transaction_hash.hex(),
                at=at,
                at_text=utc(at),
                at_iso=iso(at),
                details=_details(event),
            )
        )
    return rows


# -- 9. my alerts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    priority: str  # high, medium, low
    kind: str  # threshold, stale, technical
    what: str  # the vital, or the technical condition
    value: str
    at: float
    at_text: str
    at_iso: str


def _alert_row(notice: dict[str, Any], body: dict[str, Any]) -> AlertRow:
    at = float(body.get("at") or notice["received_at"] / 1000)
    priority = str(notice.get("priority") or body.get("priority") or "medium")
    vital = _BY_SHORT.get(str(body.get("vital")))
    if vital is not None:
        what = vital.info.label
        value = f"{float(body['value']):g} {vital.info.symbol}"
    else:
        what = str(body.get("condition") or body.get("kind") or "alert").replace("_", " ")
        value = ""
    return AlertRow(
        notice["alert_id"], priority, str(body.get("kind", "")), what, value, at, utc(at), iso(at)
    )


def my_alerts(portal: Portal) -> tuple[list[AlertRow], list[Problem], int]:
    """The patient's alerts of the last :data:`ALERTS_SINCE_S` from every gateway, each
    opened with the patient's key (newest first; a reminder of one alert shown once), the
    gateways that failed, and how many could not be opened."""
    since_ms = int((portal.clock() - ALERTS_SINCE_S) * 1000)
    rows: dict[str, AlertRow] = {}
    problems: list[Problem] = []
    unopened = 0
    for link in portal.gateways:
        try:
            notices = AlertClient(portal.key, link.http).since(since_ms)
        except Exception as exc:
            problems.append(_problem(link, exc))
            continue
        for notice in notices:
            if notice["alert_id"] in rows:
                continue
            try:
                body = open_alert(Alert.from_json(notice["alert"]), portal.key)
            except VitalchainError:
                unopened += 1
                continue
            rows[notice["alert_id"]] = _alert_row(notice, body)
    return sorted(rows.values(), key=lambda r: -r.at), problems, unopened


# -- routes ------------------------------------------------------------------------------------


def _vital_choices() -> list[dict[str, str]]:
    return [{"value": v.info.short, "label": v.info.label} for v in Vital]


def router(web: Web) -> APIRouter:
    """The patient routes: thin, each parses, calls a view above and renders."""
    routes = APIRouter()
    portal = web.portal
    devices = MyDevices(portal)
    times = _BlockTimes(portal.ledger)

    def consents_page(
        request: Request, confirmation: Confirmation | None = None, status: int = 200
    ) -> HTMLResponse:
        today = dt.datetime.fromtimestamp(portal.clock(), dt.UTC).date()
        return web.page(
            request,
            "me_consents.html",
            {
                "consents": consents(portal),
                "vitals": _vital_choices(),
                "today": today.isoformat(),
                "default_expiry": (today + 30 * _DAY).isoformat(),
                "confirmation": confirmation,
            },
            status=status,
        )

    @routes.get("/me")
    def my_devices(request: Request) -> HTMLResponse:
        web.session(request)
        rows, problems, unreadable = devices.rows()
        return web.page(
            request,
            "me_devices.html",
            {
                "devices": rows,
                "problems": problems,
                "unreadable": unreadable,
                "stale_after": ago(STALE_AFTER_S),
                "my_address": portal.me,
            },
        )

    @routes.get("/me/consents")
    def my_consents(request: Request) -> HTMLResponse:
        web.session(request)
        return consents_page(request)

    @routes.post("/me/consents")
    def grant_consent(
        request: Request,
        csrf: Text = "",
        provider: Text = "",
        vitals: Annotated[list[str] | None, Form()] = None,
        expires: Text = "",
    ) -> HTMLResponse:
        web.form(request, csrf)
        checked = parse_grant(portal, provider, vitals or [], expires)
        return consents_page(request, grant(portal, checked))

    @routes.post("/me/consents/{provider}/revoke")
    def revoke_consent(request: Request, provider: str, csrf: Text = "") -> HTMLResponse:
        web.form(request, csrf)
        return consents_page(request, revoke(portal, provider))

    @routes.get("/me/access")
    def who_accessed(request: Request) -> HTMLResponse:
        web.session(request)
        return web.page(
            request,
            "me_access.html",
            {"events": access_log(portal, times), "fetches": FETCHES_NOT_REPORTED},
        )

    @routes.get("/me/alerts")
    def alerts(request: Request) -> HTMLResponse:
        web.session(request)
        rows, problems, unopened = my_alerts(portal)
        return web.page(
            request,
            "me_alerts.html",
            {
                "alerts": rows,
                "problems": problems,
                "unopened": unopened,
                "since": f"{ALERTS_SINCE_S // 86400} days",
            },
        )

    return routes
