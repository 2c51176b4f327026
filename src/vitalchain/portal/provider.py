"""The portal's provider views: patients under consent, a patient's vitals and charts, the
verify badges, break-glass access and the FHIR download.

Why the data logic lives in :class:`ProviderViews` and not in the routes: what a clinician is
shown (which patients, which readings, which badge) must be testable without HTTP, and the
routes only parse a request, call one method and render its answer.

Trust: the chain says who is under consent (``ConsentGranted`` and ``BreakGlassAccessed``
events name the candidates; ``consentOf`` says whether each is current); the gateways give
ciphertext, decrypted here; :func:`~vitalchain.sdk.verify.verify_patient` checks every block
against the anchored roots.  Readings of a block that fails a check are not charted, listed or
exported: the page names the failed check instead of showing data nobody can vouch for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from vitalchain.edge.codes import status_for
from vitalchain.errors import VitalchainError
from vitalchain.fhir import bundle
from vitalchain.ledger import Ledger
from vitalchain.ledger.events import BREAK_GLASS_ACCESSED, CONSENT_GRANTED
from vitalchain.ledger.ledger import Consent, ConsentStatus
from vitalchain.logs import pseudonym
from vitalchain.portal import charts
from vitalchain.portal.core import GatewayLink, Portal, PortalError
from vitalchain.portal.web import HEADERS, Text, Web
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.sdk.provider import AccessError
from vitalchain.sdk.subscriber import AlertClient
from vitalchain.sdk.verify import Check, Outcome, verify_patient
from vitalchain.store.model import Reading
from vitalchain.vitals import Vital
from vitalchain.wire.address import parse_address

__all__ = [
    "REASONS",
    "Access",
    "Badge",
    "BlockView",
    "Loaded",
    "PatientRow",
    "ProviderViews",
    "router",
]

# Break-glass reason codes (the contract takes any non-zero uint8 and the reason's hash; the
# reason text itself stays with the provider).  Coarse on purpose: the chain is public.
REASONS: dict[int, str] = {
    1: "Emergency: the patient cannot consent",
    2: "Acute deterioration: the consent holder cannot be reached in time",
    3: "Other clinical emergency (explained below)",
}
MAX_REASON = 2000  # characters of the reason; only its keccak256 goes on chain
ALERT_LOOKBACK_S = 24 * 3600  # alerts listed from this long before the chart's window


# -- what the pages show -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moment:
    """A time as the page shows it: ISO (for ``<time datetime>``, which charts.js turns into
    the user's own time zone), a UTC text for no-script readers, and how far from now."""

    iso: str
    text: str
    relative: str


def moment(ts: float, now: float) -> Moment:
    when = datetime.fromtimestamp(ts, UTC)
    return Moment(
        when.isoformat(timespec="seconds"), when.strftime("%Y-%m-%d %H:%M UTC"), _ago(ts - now)
    )


def _ago(delta: float) -> str:
    size = abs(int(delta))
    days, rest = divmod(size, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d"] if days else []
    if hours and len(parts) < 2:
        parts.append(f"{hours} h")
    if minutes and len(parts) < 2 and not days:
        parts.append(f"{minutes} min")
    text = " ".join(parts) or "less than a minute"
    return f"in {text}" if delta >= 0 else f"{text} ago"


@dataclass(frozen=True, slots=True)
class Badge:
    """A verify badge: ``ok`` (verified against the anchored roots), ``pending`` (not yet
    anchored, or nothing to verify), or ``failed`` naming the failed checks."""

    kind: str  # ok | pending | failed
    text: str
    detail: str

    @classmethod
    def of(cls, checks: Sequence[Check], *, empty: str = "no sealed blocks yet") -> Badge:
        failed = [c for c in checks if c.outcome is Outcome.FAILED]
        if failed:
            names = list(dict.fromkeys(c.name for c in failed))
            detail = "; ".join(
                (f"block {c.block}: " if c.block is not None else "") + f"{c.name}: {c.detail}"
                for c in failed
            )
            return cls("failed", "failed: " + ", ".join(names), detail)
        pending = [c for c in checks if c.outcome is Outcome.PENDING]
        if pending:
            return cls("pending", "pending", pending[0].detail)
        if not any(c.block is not None for c in checks):
            return cls("pending", "pending", empty)
        return cls("ok", "verified", "every block is in an anchored root")


@dataclass(frozen=True, slots=True)
class Access:
    """What the chain says this provider may read of a patient now (chain time)."""

    patient: str
    consent: Consent
    break_glass_scope: int
    now: int

    @property
    def consented(self) -> bool:
        c = self.consent
        return c.status is ConsentStatus.GRANTED and c.expires_at > self.now

    @property
    def emergency(self) -> bool:
        return self.consent.break_glass_until > self.now

    @property
    def current(self) -> bool:
        return self.consented or self.emergency

    @property
    def scope(self) -> int:
        return (self.consent.scope if self.consented else 0) | (
            self.break_glass_scope if self.emergency else 0
        )

    @property
    def vitals(self) -> list[Vital]:
        return [v for v in Vital if self.scope & v.bit]

    @property
    def scope_text(self) -> str:
        """The vitals in scope as a clinician reads them ("every vital" for all of them)."""
        vitals = self.vitals
        if len(vitals) == len(Vital):
            return "every vital"
        return ", ".join(v.info.display for v in vitals) or "none"

    @property
    def expires(self) -> Moment | None:
        return moment(self.consent.expires_at, self.now) if self.consented else None

    @property
    def break_glass_until(self) -> Moment | None:
        return moment(self.consent.break_glass_until, self.now) if self.emergency else None


@dataclass(frozen=True, slots=True)
class PatientRow:
    address: str
    pseudonym: str
    access: Access
    badge: Badge


@dataclass(frozen=True, slots=True)
class BlockView:
    gateway: str
    group_id: int
    number: int
    readings: int
    note: str  # why its readings are not shown, or ""
    badge: Badge


@dataclass
class Loaded:
    """A patient's data from every gateway: blocks with their badges, the readings of blocks
    that did not fail verification, the patient's badge, and notes for the page."""

    patient: str
    blocks: list[BlockView] = field(default_factory=list)
    pairs: list[tuple[str, Reading]] = field(default_factory=list)  # (device, reading)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def readings(self) -> list[Reading]:
        return [r for _, r in self.pairs]

    @property
    def badge(self) -> Badge:
        return Badge.of(self.checks)


class ProviderViews:
    """The provider's data, for the routes (and the tests) to ask."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    # -- who -------------------------------------------------------------------------------------

    def access_of(self, patient: str) -> Access:
        ledger, me = self.portal.ledger, self.portal.me
        glass = ledger.events.query(BREAK_GLASS_ACCESSED.name, patient=patient, provider=me)
        scope = int(glass[-1].args["scope"]) if glass else 0
        return Access(patient, ledger.consent_of(patient, me), scope, ledger.timestamp())

    def under_consent(self) -> list[Access]:
        """Patients this provider may read now: every patient a ConsentGranted or
        BreakGlassAccessed event pairs with it, kept if ``consentOf`` says current."""
        events = self.portal.ledger.events
        me = self.portal.me
        candidates = [
            e.args["patient"]
            for name in (CONSENT_GRANTED, BREAK_GLASS_ACCESSED)
            for e in events.query(name.name, provider=me)
        ]
        found = (self.access_of(p) for p in dict.fromkeys(candidates))
        return [a for a in found if a.current]

    def patients(self) -> list[PatientRow]:
        rows = []
        for access in self.under_consent():
            try:
                badge = self.load(access.patient).badge
            except VitalchainError as exc:
                badge = Badge("pending", f"unavailable: {exc.code}", exc.message)
            rows.append(PatientRow(access.patient, pseudonym(access.patient), access, badge))
        return rows

    # -- what ------------------------------------------------------------------------------------

    def load(
        self,
        patient: str,
        *,
        break_glass: tuple[int, int, bytes] | None = None,
    ) -> Loaded:
        """Fetch, decrypt and verify ``patient``'s blocks from every gateway.

        ``break_glass=(scope, reason_code, reason)`` records the emergency on chain (through
        the first gateway's fetch, before it asks anything) first.  A store's refusal raises
        ``AccessError`` (its code), except ``unknown_block``: nothing sealed there yet."""
        loaded = Loaded(patient)
        emergency: tuple[Ledger, int, int, bytes] | None = None
        if break_glass is not None:
            emergency = (self.portal.ledger, *break_glass)
        for link in self.portal.gateways:
            self._load_from(link, loaded, emergency)
            emergency = None
        return loaded

    def _load_from(
        self,
        link: GatewayLink,
        loaded: Loaded,
        emergency: tuple[Ledger, int, int, bytes] | None,
    ) -> None:
        portal, patient = self.portal, loaded.patient
        reader = portal.reader(link)
        try:
            group = link.group_id
            try:
                fetched = reader.fetch(group, patient, break_glass=emergency)
            except AccessError as exc:
                if exc.code == "unknown_block":
                    return
                raise
            report = verify_patient(
                reader.source, portal.ledger, group, patient, reader=portal.key,
                opened=reader.opened,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise PortalError("store_unavailable", f"{link.url} did not answer") from exc
        loaded.checks.extend(report.checks)
        for item in fetched:
            number = item.block.number
            badge = Badge.of([c for c in report.checks if c.block == number])
            pairs: list[tuple[str, Reading]] = []
            note = ""
            if item.stanza is None:
                note = "holds no key for you (sealed before your access, or outside it)"
            else:
                try:
                    pairs = item.readings(portal.key)
                except VitalchainError as exc:
                    note = f"does not open: {exc.code}"
            if badge.kind == "failed":
                note = "failed verification: its readings are not shown"
            else:
                loaded.pairs.extend(pairs)
            loaded.blocks.append(BlockView(link.url, group, number, len(pairs), note, badge))

    def thresholds(self, patient: str, vitals: Iterable[Vital]) -> dict[Vital, tuple[float, float]]:
        """The patient's on-chain (low, high) of each of ``vitals`` that has one."""
        return self.portal.ledger.thresholds(patient, vitals)

    def alerts(self, patient: str, since_s: float) -> tuple[list[charts.AlertMark], list[str]]:
        """Threshold alerts about ``patient`` addressed to this provider, listed from every
        gateway since ``since_s`` (wall time of delivery) and opened here; notes for the page
        where a gateway would not list them or an alert would not open."""
        marks: dict[str, charts.AlertMark] = {}
        notes: list[str] = []
        unopened = 0
        for link in self.portal.gateways:
            try:
                listed = AlertClient(self.portal.key, link.http).since(max(0, int(since_s * 1000)))
            except (VitalchainError, httpx.HTTPError) as exc:
                code = getattr(exc, "code", type(exc).__name__)
                notes.append(f"alerts from {link.url} could not be listed ({code})")
                continue
            for notice in listed:
                alert_id = str(notice["alert_id"])
                if alert_id in marks:
                    continue  # a reminder of one alert: one marker
                try:
                    body = open_alert(Alert.from_json(notice["alert"]), self.portal.key)
                    if body.get("kind") != "threshold" or body.get("patient") != patient:
                        continue
                    vital = Vital.parse(str(body["vital"]))
                except (VitalchainError, ValueError, KeyError):
                    unopened += 1
                    continue
                marks[alert_id] = charts.AlertMark(
                    vital, float(body["at"]), float(body["value"]), str(body["priority"])
                )
        if unopened:
            notes.append(f"{unopened} alert(s) would not open with your key and are not shown")
        return sorted(marks.values(), key=lambda m: m.t), notes


# -- the page's context ----------------------------------------------------------------------------


def page_context(
    views: ProviderViews, access: Access, loaded: Loaded | None, range_name: str
) -> dict[str, Any]:
    """Everything patient.html shows of one patient (``loaded`` None: refused before any
    fetch, so only the consent section and the break-glass form)."""
    patient = access.patient
    context: dict[str, Any] = {
        "patient": patient,
        "pseudonym": pseudonym(patient),
        "access": access,
        "reasons": REASONS,
        "all_vitals": [(v.info.short, v.info.display) for v in Vital],
        "ranges": list(charts.RANGES),
        "range": range_name,
        "loaded": loaded,
        "latest": [],
        "charts": [],
        "chart_json": Markup("{}"),
        "notes": [],
        "window": None,
    }
    if loaded is None:
        return context
    readings = loaded.readings
    span = charts.window(readings, charts.RANGES[range_name])
    thresholds = views.thresholds(patient, {r.vital for r in readings})
    marks: list[charts.AlertMark] = []
    notes = list(loaded.notes)
    if span is not None:
        marks, alert_notes = views.alerts(patient, span[0] - ALERT_LOOKBACK_S)
        notes.extend(alert_notes)
    built = (
        {}
        if span is None
        else charts.charts(readings, dict(thresholds), marks, start=span[0], end=span[1])
    )
    now = views.portal.clock()  # readings are in device time: "ago" by the wall clock
    context.update(
        latest=[
            {
                "vital": v.info.display,
                "value": f"{r.value:g}",
                "unit": v.info.symbol,
                "at": moment(r.t_ms / 1000, now),
            }
            for v, r in charts.latest(readings).items()
        ],
        charts=[
            {
                "key": key,
                "title": chart.title,
                "unit": chart.unit,
                "points": chart.points,
                "alerts": len(chart.alerts),
                "bands": [
                    (Vital.parse(name).info.display, band) for name, band in chart.bands.items()
                ],
            }
            for key, chart in built.items()
        ],
        chart_json=_script_json({key: chart.to_json() for key, chart in built.items()}),
        notes=notes,
        window=None if span is None else (moment(span[0], now), moment(span[1], now)),
    )
    return context


def _script_json(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    escaped = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(escaped)  # noqa: S704 -- our own JSON, with every <, > and & escaped


# -- parsing -----------------------------------------------------------------------------------


def patient_address(text: str) -> str:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise PortalError("invalid_request", f"not a patient address: {exc}") from None


def range_of(text: str) -> str:
    if text not in charts.RANGES:
        raise PortalError("invalid_request", f"range is one of {', '.join(charts.RANGES)}")
    return text


def bound(text: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a whole day, UTC: ``end`` takes the day's end) or an ISO datetime
    (naive: UTC); "" is no bound."""
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(), UTC)
            return start + timedelta(days=1) if end else start
        moment_ = datetime.fromisoformat(text)
    except ValueError:
        raise PortalError(
            "invalid_request", "from and to are dates (YYYY-MM-DD) or ISO datetimes"
        ) from None
    return moment_ if moment_.tzinfo is not None else moment_.replace(tzinfo=UTC)


def break_glass_of(reason_code: str, reason: str, vitals: Sequence[str]) -> tuple[int, int, bytes]:
    """The form's (scope, reason code, reason bytes); 422 ``invalid_request`` if incomplete."""
    text = reason.strip()
    if not text:
        raise PortalError("invalid_request", "a break-glass access needs a reason")
    if len(text) > MAX_REASON:
        raise PortalError("invalid_request", f"the reason is at most {MAX_REASON} characters")
    try:
        code = int(reason_code)
    except ValueError:
        code = 0
    if code not in REASONS:
        raise PortalError("invalid_request", "choose one of the reason codes")
    scope = 0
    for name in vitals:
        try:
            scope |= Vital.parse(name).bit
        except ValueError:
            raise PortalError("invalid_request", f"unknown vital {name!r}") from None
    if not scope:
        raise PortalError("invalid_request", "choose at least one vital to read")
    return scope, code, text.encode()


# -- routes --------------------------------------------------------------------------------------


def router(web: Web) -> APIRouter:
    """The provider routes: thin, each asks :class:`ProviderViews` once and renders."""
    api = APIRouter()
    views = ProviderViews(web.portal)

    @api.get("/patients", include_in_schema=False)
    def patients(request: Request) -> HTMLResponse:
        web.session(request)
        return web.page(request, "patients.html", {"rows": views.patients()})

    @api.get("/patients/open", include_in_schema=False)
    def open_patient(request: Request, address: str = "") -> Response:
        """The "open a patient by address" form (a patient not listed: break-glass)."""
        web.session(request)
        patient = patient_address(address.strip())
        return RedirectResponse(f"/patients/{patient}", status_code=303, headers=HEADERS)

    def patient_page(
        request: Request,
        patient: str,
        range_name: str,
        *,
        break_glass: tuple[int, int, bytes] | None = None,
    ) -> HTMLResponse:
        access = views.access_of(patient)
        if break_glass is None and not access.current:
            if access.consent.status is ConsentStatus.GRANTED:
                return refused_page(request, access, "consent_expired", "the consent has expired")
            return refused_page(request, access, "no_consent", "no current consent or emergency")
        try:
            loaded = views.load(patient, break_glass=break_glass)
        except AccessError as exc:
            return refused_page(request, views.access_of(patient), exc.code, exc.message)
        notice = None
        if break_glass is not None:
            access = views.access_of(patient)
            record = web.portal.ledger.events.query(
                BREAK_GLASS_ACCESSED.name, patient=patient, provider=web.portal.me
            )[-1]
            notice = f"Break-glass access recorded on chain (block {record.block_number})."
        context = page_context(views, access, loaded, range_name)
        return web.page(request, "patient.html", {**context, "refusal": None}, notice=notice)

    def refused_page(request: Request, access: Access, code: str, message: str) -> HTMLResponse:
        context = page_context(views, access, None, charts.DEFAULT_RANGE)
        context["refusal"] = {"code": code, "message": message}
        return web.page(request, "patient.html", context, status=status_for(code) or 403)

    @api.get("/patients/{address}", include_in_schema=False)
    def patient(
        request: Request,
        address: str,
        range_text: Annotated[str, Query(alias="range")] = charts.DEFAULT_RANGE,
    ) -> HTMLResponse:
        web.session(request)
        return patient_page(request, patient_address(address), range_of(range_text))

    @api.post("/patients/{address}/break-glass", include_in_schema=False)
    def break_glass(
        request: Request,
        address: str,
        csrf: Text = "",
        reason_code: Text = "",
        reason: Text = "",
        vital: Annotated[list[str] | None, Form()] = None,
    ) -> HTMLResponse:
        web.form(request, csrf)
        patient = patient_address(address)
        emergency = break_glass_of(reason_code, reason, vital or [])
        return patient_page(request, patient, charts.DEFAULT_RANGE, break_glass=emergency)

    @api.get("/patients/{address}/fhir", include_in_schema=False)
    def fhir(
        request: Request,
        address: str,
        from_text: Annotated[str, Query(alias="from")] = "",
        to_text: Annotated[str, Query(alias="to")] = "",
    ) -> Response:
        web.session(request)
        patient = patient_address(address)
        start, end = bound(from_text, end=False), bound(to_text, end=True)
        if start is not None and end is not None and start >= end:
            raise PortalError("invalid_request", "from must be before to")
        access = views.access_of(patient)
        if not access.current:
            raise PortalError("no_consent", "no current consent or emergency for this patient")
        loaded = views.load(patient)
        lo = None if start is None else start.timestamp() * 1000
        hi = None if end is None else end.timestamp() * 1000
        pairs = [
            (device, r)
            for device, r in loaded.pairs
            if (lo is None or r.t_ms >= lo) and (hi is None or r.t_ms < hi)
        ]
        ranges = views.thresholds(patient, {r.vital for _, r in pairs})
        try:
            document = bundle(patient, pairs, ranges=ranges)
        except ValueError as exc:
            raise PortalError("invalid_request", f"cannot express in FHIR: {exc}") from None
        days = "-".join(
            b.strftime("%Y%m%d") for b in (start, end and end - timedelta(seconds=1)) if b
        )
        name = f"vitalchain-{pseudonym(patient)[2:]}{'-' + days if days else ''}.fhir.json"
        return Response(
            json.dumps(document, indent=2) + "\n",
            media_type="application/fhir+json",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    return api
