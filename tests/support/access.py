"""Helpers of the provider access suite (tests/unit/access/test_access.py): a patient with sealed
blocks, and a raw access request.
"""

from __future__ import annotations

from typing import Any

from tests.support.node import World
from vitalchain.crypto import PrivateKey
from vitalchain.store import Reading
from vitalchain.vitals import Vital
from vitalchain.wire.access import ACCESS_CONTEXT, access_message


def sealed_patient(world: World, *vitals: Vital) -> tuple[PrivateKey, list[int]]:
    patient = world.patient()
    device = world.device(patient)
    for vital in vitals or (Vital.SPO2,):
        device.send(device.prepare([(vital, 97 if vital is Vital.SPO2 else 70)] * 4))
    blocks = world.running.sealer.seal_due()
    return patient, [b.number for b in blocks]


def raw_access(world: World, provider: PrivateKey, patient: str, *, number: int | None = None,
               nonce: bytes | None = None, signer: PrivateKey | None = None) -> Any:  # fmt: skip
    if nonce is None:
        nonce = bytes.fromhex(
            world.client.post(
                "/v1/store/challenges", json={"v": 1, "provider": provider.address}
            ).json()["nonce"]
        )
    sig = (signer or provider).sign(
        access_message(nonce, world.group_id, patient, 0, number), ACCESS_CONTEXT
    )
    return world.client.post(
        "/v1/store/access",
        json={"v": 1, "provider": provider.address, "group_id": world.group_id, "patient": patient,
              "after_number": 0, "number": number, "nonce": nonce.hex(), "signature": sig.to_rsv().hex()},
    )  # fmt: skip


def _reading(r: dict[str, Any]) -> Any:
    return Reading(r["seq"], Vital.parse(r["vital"]), float(r["value"]), r["t"])
