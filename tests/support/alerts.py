"""Helpers of the alert tests (tests/unit/alerts/): a ward whose alert ring needs ``RING_K`` other
devices, alerts of every priority escalating after ``ACK_TIMEOUT_S`` (``escalating_after``),
and signed requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.node import World, make_world
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.ledger import Ledger
from vitalchain.sdk.alert import Alert
from vitalchain.sdk.subscriber import sign_action
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.store import Message
from vitalchain.vitals import Vital

RING_K = 2
ACK_TIMEOUT_S = 0.5
SEALING = SealingPolicy(max_readings=1000, max_age_s=3600)  # blocks close only when told


def escalating_after(seconds: float) -> dict[str, float]:
    """Node settings under which an alert of any priority escalates after ``seconds``."""
    return {f"alert_escalate_{p}_s": seconds for p in ("high", "medium", "low")}


def alert_world(
    chain: tuple[Ledger, PrivateKey], data_dir: Path, *, escalating: bool = True, **overrides: Any
) -> Iterator[World]:
    """A node for alert tests: blocks that do not close on their own (:data:`SEALING`), an alert
    ring of ``RING_K`` other devices, and alerts escalating after ``ACK_TIMEOUT_S`` unless
    ``escalating`` is false."""
    fields = {**(escalating_after(ACK_TIMEOUT_S) if escalating else {}), **overrides}
    yield from make_world(chain, data_dir, SEALING, alert_ring_k=RING_K, **fields)


@dataclasses.dataclass
class Ward:
    patient: PrivateKey
    doctor: PrivateKey  # consented for SpO2
    stranger: PrivateKey  # a registered provider without consent
    device: DeviceClient
    stored: list[Message]


def ward(world: World, *, others: int = RING_K, ring: bool = True) -> Ward:
    patient, doctor, stranger = world.patient(), world.provider(), world.provider()
    world.consent(patient, doctor, Vital.SPO2)
    device = world.device(patient)
    for _ in range(others):
        world.device(world.patient())
    stored: list[Message] = []
    world.running.gateway.ingest_core.on_stored(stored.append)
    if ring:
        device.use_ring(device.fetch_ring(others))
    return Ward(patient, doctor, stranger, device, stored)


def raised_since(world: World, before: int) -> list[Alert]:
    """The alerts raised after the service's counter said ``before`` (oldest first)."""
    alerts = world.running.alerts
    new = alerts.raised_total - before
    return list(alerts.raised)[-new:] if new > 0 else []


def low_spo2(world: World, w: Ward, count: int = 3, value: float = 85.0) -> Alert:
    before = world.running.alerts.raised_total
    w.device.send(w.device.prepare([(Vital.SPO2, value)] * count))
    return wait_for(lambda: raised_since(world, before))[0]


def signed_post(world: World, key: PrivateKey, path: str, action: str, *fields: str,
                body: dict[str, Any], signer: PrivateKey | None = None) -> Any:  # fmt: skip
    nonce = bytes.fromhex(
        world.client.post("/v1/alerts/challenges", json={"v": 1, "address": key.address}).json()[
            "nonce"
        ]
    )
    signature = sign_action(signer or key, action, nonce, *fields)
    payload = {"v": 1, "by": key.address, "nonce": nonce.hex(), "signature": signature, **body}
    return world.client.post(path, json=payload)


def _recipients(alert: Alert) -> list[bytes]:
    from vitalchain.sdk.alert import recipients_of

    return recipients_of(alert)
