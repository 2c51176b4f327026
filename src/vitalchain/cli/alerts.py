"""``vitalchain alerts``: watch, list, acknowledge and snooze your alerts.

``watch`` must not go quiet when the gateway restarts: it reconnects with backoff and fetches
what was delivered while it was away, and shows each alarm in the patient's terms (priority,
the vital by name, the value and the limit it crossed in everyday units, the local time of
the reading), since that is what the person reading it acts on.  Every bad argument is one
line ending in a code (exit 2) before the gateway is contacted; a refusal by the gateway is
its code (exit 1), except a snooze duration the gateway does not offer, which is the
argument's fault (exit 2, the line lists the durations it offers).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from vitalchain.cli._common import (
    DEFAULT_GATEWAY,
    BadArgument,
    command_group,
    err,
    fail,
    gateway_client,
    guard,
    parse_address,
    parse_http_url,
    parse_vital,
    read_key,
    stdout,
)

if TYPE_CHECKING:
    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.sdk.subscriber import AlertClient
    from vitalchain.vitals import Vital

__all__ = ["alerts_app", "describe", "parse_duration"]

alerts_app = command_group(
    "Receive, list, acknowledge and snooze alerts as a patient or a provider."
)

KeyOpt = Annotated[
    Path, typer.Option("--key", help="Your key file (the patient, or a consented provider).")
]
GatewayUrlOpt = Annotated[str, typer.Option("--gateway", help="Gateway base URL.")]
TzOpt = Annotated[
    str | None,
    typer.Option(
        "--tz", help="Show times in this IANA time zone (the patient's), e.g. Europe/Paris."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per alert (JSON Lines).")]

# The patient's words for what the UCUM units and vital names say.
_NAMES = {
    "systolic": "systolic blood pressure",
    "diastolic": "diastolic blood pressure",
    "heart_rate": "heart rate",
    "spo2": "blood oxygen (SpO2)",
    "temperature": "temperature",
    "glucose": "blood sugar",
}
_UNITS = {"mm[Hg]": "mmHg", "/min": "beats/min", "Cel": "°C", "%": "%", "mg/dL": "mg/dL"}
_COLOURS = {"high": "bold red", "medium": "bold yellow", "low": "bold cyan"}
_CONDITIONS = {
    "device_stale": "no data from device {device} since {last_seen}",
    "undeliverable": "alert {alert_id} reached no one: no recipient confirmed receipt",
    "chain_unreachable": "the gateway cannot reach the chain (since {down_since})",
    "store_unreachable": "the gateway cannot reach its store (since {down_since})",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}


def ws_url(gateway: str) -> str:
    """The alert stream's WebSocket URL for a gateway's http(s) base URL."""
    base = parse_http_url(gateway, "--gateway")
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/alerts/ws"


def parse_duration(text: str, hint: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` (a bare number is minutes) as seconds, > 0."""
    match = _DURATION.match(text)
    seconds = float(match[1]) * _SECONDS[match[2]] if match else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise BadArgument(
            f"{text!r} is not a duration such as 90s, 30m, 2h or 1d", hint, code="invalid_duration"
        )
    return seconds


def parse_zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadArgument(
            f"unknown time zone {name!r} (an IANA name such as Europe/Paris)",
            "--tz",
            code="unknown_time_zone",
        ) from None


def parse_alert_id(text: str) -> str:
    alert_id = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", alert_id):
        raise BadArgument(
            f"{text!r} is not an alert id (32 hex digits, as `alerts watch` and `alerts list` "
            "print them)",
            "ALERT_ID",
            code="invalid_alert_id",
        )
    return alert_id


def _when(seconds: float, zone: tzinfo | None, now: float) -> str:
    """A local clock time; the date too when it is not today there."""
    at = datetime.fromtimestamp(seconds).astimezone(zone)
    today = datetime.fromtimestamp(now).astimezone(zone).date()
    shown = at.strftime("%H:%M:%S") if at.date() == today else at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{shown} {at.tzname() or ''}".rstrip()


def _number(value: Any) -> str:
    return f"{float(value):g}" if isinstance(value, int | float) else str(value)


def describe(
    body: dict[str, Any],
    notice: dict[str, Any],
    zone: tzinfo | None = None,
    now: float | None = None,
) -> str:
    """One line a patient or a nurse can act on, e.g. ``HIGH  blood oxygen (SpO2) 84 %,
    below 90 %  at 14:03:21 CET  patient 0x…  alert 3f…``."""
    now = time.time() if now is None else now
    priority = str(notice.get("priority") or body.get("priority") or "medium").lower()
    label = f"[{_COLOURS.get(priority, 'bold')}]{escape(priority.upper())}[/]"
    kind = body.get("kind")
    at = body.get("at")
    when = _when(float(at), zone, now) if isinstance(at, int | float) else "?"
    if kind == "threshold":
        vital = str(body.get("vital"))
        unit = _UNITS.get(str(body.get("unit", "")), str(body.get("unit", "")))
        below = body.get("direction", 0) < 0
        limit = body.get("low") if below else body.get("high")
        what = (
            f"{_NAMES.get(vital, vital)} {_number(body.get('value'))} {unit}, "
            f"{'below' if below else 'above'} {_number(limit)} {unit}"
        )
    else:  # technical alarms (kind "stale" before body v2)
        condition = "device_stale" if kind == "stale" else str(body.get("condition", kind))
        times = {
            k: _when(float(body[k]), zone, now) if isinstance(body.get(k), int | float) else "?"
            for k in ("last_seen", "down_since")
        }
        values = {"device": body.get("device"), "alert_id": body.get("alert_id"), **times}
        template = _CONDITIONS.get(condition, f"technical alarm: {condition}")
        what = template.format(**values)
    repeat = f" (reminder {notice['repeat']})" if notice.get("repeat") else ""
    latency = notice.get("latency_ms")
    delay = f", {latency:.0f} ms after the reading arrived" if latency is not None else ""
    patient = f"  patient {body['patient']}" if body.get("patient") else ""
    return (
        f"{label}{repeat}  {escape(what)}  at {when}{patient}  "
        f"alert {notice.get('alert_id')} (tier {notice.get('tier')}{delay})"
    )


def _record(alert_id: str, kind: str, notice: dict[str, Any], body: dict[str, Any]) -> str:
    record = {
        "alert_id": alert_id,
        "kind": kind,
        "priority": notice.get("priority") or body.get("priority"),
        "repeat": notice.get("repeat", 0),
        "tier": notice.get("tier"),
        "received_at": notice.get("received_at"),
        "notified_at": notice.get("notified_at"),
        "body": {k: v for k, v in body.items() if k not in ("payload", "signature")},
    }
    if notice.get("latency_ms") is not None:
        record["latency_ms"] = round(float(notice["latency_ms"]), 1)
    return json.dumps(record)


def _open(notice: dict[str, Any], me: PrivateKey) -> tuple[str, str, dict[str, Any]] | None:
    """(alert id, kind, decrypted body), or None (said on stderr) if it does not open."""
    from vitalchain.errors import VitalchainError
    from vitalchain.sdk.alert import Alert, open_alert

    try:
        alert = Alert.from_json(notice["alert"])
        return alert.alert_id.hex(), alert.kind, open_alert(alert, me)
    except (VitalchainError, KeyError, TypeError, ValueError) as exc:
        code = getattr(exc, "code", type(exc).__name__)
        err().print(f"[yellow]an alert did not open or verify ({code})")
        return None


def _show(notice: dict[str, Any], me: PrivateKey, zone: tzinfo | None, as_json: bool) -> bool:
    opened = _open(notice, me)
    if opened is None:
        return False
    alert_id, kind, body = opened
    if as_json:
        typer.echo(_record(alert_id, kind, notice, body))
    else:
        stdout().print(describe(body, notice, zone))
    return True


def _event(name: str, details: dict[str, Any]) -> None:
    """The subscriber's reconnection story, on stderr (never an address, never a key)."""
    if name == "disconnected":
        err().print("[yellow]the alert stream dropped; reconnecting")
    elif name == "reconnecting":
        err().print(f"reconnecting in {details['delay_s']:.1f} s (attempt {details['attempt']})")
    elif name == "subscribed":
        err().print("[green]reconnected")
    elif name == "caught_up" and details.get("count"):
        err().print(f"fetched {details['count']} alert(s) delivered while away")
    elif name == "catch_up_failed":
        err().print(f"[yellow]could not fetch missed alerts ({details.get('error')})")


@alerts_app.command("watch")
def watch(
    key: KeyOpt,
    gateway: GatewayUrlOpt = DEFAULT_GATEWAY,
    count: Annotated[
        int | None, typer.Option(min=1, help="Exit after this many alerts (exit 1 if fewer).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds in all.")
    ] = None,
    tz: TzOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe to your alerts over WebSocket, decrypt and print each as it arrives.

    The subscription is signed with your key; the gateway sends only alerts you are a
    recipient of, first those it has no receipt for, then live ones, and this command sends
    a receipt for each (a receipt is not an acknowledgement: use `alerts ack`).  If the
    gateway restarts or the network drops, it reconnects with backoff (0.5 s doubling to
    30 s) and fetches what was delivered meanwhile; each alert is shown once.  Each line
    gives the priority, the vital, its value and the limit crossed, the local time of the
    reading (--tz for the patient's zone), the alert id, and the latency from the reading's
    arrival at the gateway.  Exits 0 on Ctrl-C, after --count alerts, or at --timeout
    (exit 1 if --count was not met).
    """
    from websockets.exceptions import WebSocketException

    from vitalchain.errors import VitalchainError
    from vitalchain.sdk.subscriber import AlertSubscriber, SubscriptionClosed

    me = read_key(key)
    url = ws_url(gateway)
    zone = parse_zone(tz)
    http = gateway_client(gateway)
    try:
        subscriber = AlertSubscriber(url, me, http=http, on_event=_event)
    except VitalchainError as exc:
        http.close()
        fail(f"the gateway refused the subscription: {exc.message}", why=exc.code)
    except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
        http.close()
        fail(f"cannot subscribe at {url}: {exc or type(exc).__name__}", why="unreachable")
    err().print(f"subscribed as {me.address} at {url}; waiting for alerts")
    deadline = None if timeout is None else time.monotonic() + timeout
    received = 0
    try:
        while count is None or received < count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                notice = subscriber.receive(timeout=remaining)
            except TimeoutError:
                break
            except SubscriptionClosed:
                break
            except VitalchainError as exc:  # refused on reconnecting
                fail(f"the gateway refused the subscription: {exc.message}", why=exc.code)
            if _show(notice, me, zone, as_json):
                received += 1
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.close()
        http.close()
    if count is not None and received < count:
        fail(f"timed out after {received} of {count} alert(s)", why="timeout")


@contextmanager
def _client(key: Path, gateway: str) -> Iterator[AlertClient]:
    from vitalchain.sdk.subscriber import AlertClient

    me = read_key(key)
    with gateway_client(gateway) as http:
        yield AlertClient(me, http)


@alerts_app.command("list")
def list_alerts(
    key: KeyOpt,
    gateway: GatewayUrlOpt = DEFAULT_GATEWAY,
    since: Annotated[
        str, typer.Option(help="How far back: 90s, 30m, 2h, 1d (a bare number is minutes).")
    ] = "24h",
    receipt: Annotated[
        bool, typer.Option(help="Confirm receipt of what is listed (the gateway stops re-sending).")
    ] = True,
    tz: TzOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the alerts delivered to you recently (what you missed), oldest first.

    Signs a one-time challenge (`GET /v1/alerts?since=…`), decrypts each alert and prints it
    as `alerts watch` does, at most 500.  With --receipt (the default) it then confirms
    receipt of them, so the gateway stops re-sending them to `alerts watch`.
    """
    window = parse_duration(since, "--since")
    zone = parse_zone(tz)
    with _client(key, gateway) as client:
        since_ms = max(0, int((time.time() - window) * 1000))
        with guard(f"cannot list alerts at {gateway}"):
            notices = client.since(since_ms)
        shown = [n for n in notices if _show(n, client.key, zone, as_json)]
        if receipt and notices:
            with guard("cannot confirm receipt"):
                client.receipts(list(dict.fromkeys(n["alert_id"] for n in notices)))
    if not as_json:
        err().print(f"{len(shown)} alert(s) in the last {since}")


@alerts_app.command("ack")
def acknowledge(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (32 hex digits).")],
    key: KeyOpt,
    gateway: GatewayUrlOpt = DEFAULT_GATEWAY,
) -> None:
    """Acknowledge an alert: you are handling it, so escalation and reminders stop.

    Only the patient or a provider who was notified of it may; the first acknowledgement
    counts, a later one is accepted and changes nothing.
    """
    alert_id = parse_alert_id(alert_id)
    with _client(key, gateway) as client, guard(f"cannot acknowledge alert {alert_id}"):
        first = client.acknowledge(alert_id)
    if first:
        stdout().print(f"acknowledged alert {alert_id}: escalation stopped")
    else:
        stdout().print(f"alert {alert_id} was already acknowledged")


@alerts_app.command("snooze")
def snooze(
    key: KeyOpt,
    vital: Annotated[
        str, typer.Option(help="The vital whose alerts to silence (spo2, hr, …), or all.")
    ],
    minutes: Annotated[
        str, typer.Option(metavar="MINUTES", help="How long; one of the gateway's choices.")
    ],
    patient: Annotated[
        str | None, typer.Option(help="The patient (default: yourself, as the patient).")
    ] = None,
    gateway: GatewayUrlOpt = DEFAULT_GATEWAY,
) -> None:
    """Silence a patient's alerts (one vital, or all) for you, for a while.

    Durations are a fixed list per alarm priority (by default 5, 10 or 15 minutes for a
    high-priority alarm, 15, 30 or 60 for medium, 30, 60 or 120 for low; the gateway's
    settings decide, and a refusal lists them).  A high-priority alarm can never be silenced
    for longer than its longest choice.  A snooze acknowledges nothing, and the rest of the
    care team is still notified.
    """
    duration_s = _minutes(minutes)
    vitals: list[Vital | None] = (
        [None] if vital.strip().lower() == "all" else list(parse_vital(vital, "--vital"))
    )
    who = parse_address(patient, "--patient") if patient is not None else None
    with _client(key, gateway) as client:
        target = who or client.key.address
        for each in vitals:
            until = _snooze_one(client, target, each, duration_s, minutes)
        name = "every vital" if vitals == [None] else ", ".join(v.info.short for v in vitals if v)
        stdout().print(
            f"snoozed {name} of {target} for {duration_s / 60:g} min (until "
            f"{datetime.fromtimestamp(until).astimezone().strftime('%H:%M:%S %Z').strip()})"
        )


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise BadArgument(
            f"{text!r} is not a number of minutes above 0", "--minutes", code="invalid_duration"
        )
    return value * 60


def _snooze_one(
    client: AlertClient, patient: str, vital: Vital | None, duration_s: float, given: str
) -> float:
    from vitalchain.sdk.subscriber import GatewayRefusal

    with guard("cannot snooze"):
        try:
            return client.snooze(patient, vital, duration_s)
        except GatewayRefusal as exc:
            if exc.code != "invalid_snooze":
                raise
            offered = ", ".join(f"{c / 60:g}" for c in exc.choices) or "none"
            raise BadArgument(
                f"a snooze of {given} minutes is not offered for these alarms; choose {offered}",
                "--minutes",
                code="invalid_snooze",
            ) from None
