"""``vitalchain alerts``: receive your alerts live over WebSocket and decrypt them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vitalchain.cli._common import DEFAULT_GATEWAY, err, fail, parse_http_url, read_key, stdout

__all__ = ["alerts_app"]

alerts_app = typer.Typer(
    help="Receive alerts as a patient or a provider.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def ws_url(gateway: str) -> str:
    """The alert stream's WebSocket URL for a gateway's http(s) base URL."""
    base = parse_http_url(gateway, "--gateway")
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/alerts/ws"


def _describe(body: dict[str, Any], notice: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(notice["received_at"] / 1000, UTC).strftime("%H:%M:%S")
    latency = f"{notice['latency_ms']:.0f} ms"
    if body.get("kind") == "stale":
        return (
            f"{at} [bold yellow]STALE[/] device {body.get('device')} of patient "
            f"{body.get('patient')} is silent (tier {notice.get('tier')}, latency {latency})"
        )
    direction = "LOW" if body.get("direction", 0) < 0 else "HIGH"
    return (
        f"{at} [bold red]{direction} {escape(str(body.get('vital')))}[/] "
        f"{body.get('value')} {escape(str(body.get('unit', '')))} "
        f"(normal {body.get('low')} to {body.get('high')}) patient {body.get('patient')} "
        f"device {body.get('device')} (tier {notice.get('tier')}, latency {latency})"
    )


@alerts_app.command("watch")
def watch(
    key: Annotated[
        Path, typer.Option("--key", help="Your key file (the patient, or a consented provider).")
    ],
    gateway: Annotated[str, typer.Option(help="Gateway base URL.")] = DEFAULT_GATEWAY,
    count: Annotated[
        int | None, typer.Option(min=1, help="Exit after this many alerts (exit 1 if fewer).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds in all.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per alert (JSON Lines).")
    ] = False,
) -> None:
    """Subscribe to your alerts over WebSocket, decrypt and print each as it arrives.

    The subscription is signed with your key; the gateway sends only alerts you are a
    recipient of.  Opening checks that the reading inside is the one the device signed; the
    latency shown runs from the reading's arrival at the gateway to its display here.
    Exits 0 on Ctrl-C, after --count alerts, or at --timeout (exit 1 if --count was not met).
    """
    from websockets.exceptions import ConnectionClosed, WebSocketException

    from vitalchain.care.alerts import Alert, open_alert
    from vitalchain.care.delivery import AlertSubscriber
    from vitalchain.errors import VitalchainError

    me = read_key(key)
    url = ws_url(gateway)
    console = stdout()
    try:
        subscriber = AlertSubscriber(url, me)
    except VitalchainError as exc:
        fail(f"the gateway refused the subscription: {exc.message}", why=exc.code)
    except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
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
            except ConnectionClosed:
                fail("the gateway closed the alert stream", why="stream_closed")
            if notice.get("type") != "alert":
                continue
            try:
                alert = Alert.from_json(notice["alert"])
                body = open_alert(alert, me)
            except (VitalchainError, KeyError, TypeError, ValueError) as exc:
                code = getattr(exc, "code", type(exc).__name__)
                err().print(f"[yellow]an alert did not open or verify ({code})")
                continue
            received += 1
            if as_json:
                record = {
                    "alert_id": alert.alert_id.hex(),
                    "kind": alert.kind,
                    "tier": notice.get("tier"),
                    "received_at": notice.get("received_at"),
                    "notified_at": notice.get("notified_at"),
                    "latency_ms": round(float(notice["latency_ms"]), 1),
                    "body": {k: v for k, v in body.items() if k not in ("payload", "signature")},
                }
                typer.echo(json.dumps(record))
            else:
                console.print(_describe(body, notice))
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.close()
    if count is not None and received < count:
        fail(f"timed out after {received} of {count} alert(s)", why="timeout")
