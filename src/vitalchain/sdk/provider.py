"""The provider's client of the store's access API (docs/spec/access.md): fetch with consent,
decrypt on the provider's side; the store never sees plaintext."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from vitalchain.crypto.keys import PrivateKey
from vitalchain.edge.client import raise_for_refusal
from vitalchain.edge.codes import Refused
from vitalchain.errors import DecodeError, InvalidSignature
from vitalchain.ledger import Ledger
from vitalchain.sdk.source import HttpSource
from vitalchain.sdk.verify import Opened
from vitalchain.store.model import Reading
from vitalchain.wire.access import (
    ACCESS_CONTEXT,
    AccessResponse,
    Challenge,
    access_message,
)
from vitalchain.wire.block import Block, BlockEntry, KeyEntry

__all__ = ["AccessError", "FetchedBlock", "ProviderClient"]


class AccessError(Refused):
    """A refused access request (its status is the edge's table's), or, raised by
    :class:`ProviderClient`, the store's refusal as received."""

    code = "access_error"


@dataclass(frozen=True, slots=True)
class FetchedBlock:
    """A block as released to a provider; decrypting it is shared with ``verify_patient``
    through ``opened`` (the client's), so fetch-then-verify opens each block once."""

    block: Block
    stanza: KeyEntry | None  # the provider's keys to the sections it may open
    opened: Opened = field(default_factory=Opened, compare=False, repr=False)

    @property
    def _ring(self) -> list[KeyEntry]:
        return [] if self.stanza is None else [self.stanza]

    def open(self, reader: PrivateKey) -> list[BlockEntry]:
        return self.opened.entries(self.block, self._ring, reader)

    def readings(self, reader: PrivateKey) -> list[tuple[str, Reading]]:
        """Decrypt and decode: ``(device, reading)`` pairs, each message's device signature
        checked (``InvalidSignature``; ``DecodeError`` for a malformed message).  Inclusion
        and anchors are :mod:`~vitalchain.sdk.verify`'s job."""
        self.open(reader)  # a key that does not open it: DecryptionError, as it is
        try:
            messages = self.opened.messages(self.block, self._ring, reader)
        except DecodeError as exc:
            raise DecodeError(f"block {self.block.number}: malformed message") from exc
        except InvalidSignature:
            raise InvalidSignature(
                f"block {self.block.number}: a message is not signed by its device"
            ) from None
        return [
            (m.entry.device, Reading(r.seq, r.vital, float(r.value), r.t))
            for m in messages
            for r in m.payload.readings
        ]


class ProviderClient:
    """Fetch (with consent) and decrypt on the provider's side; the store never sees plaintext."""

    def __init__(self, key: PrivateKey, http: httpx.Client) -> None:
        self.key = key
        self.http = http
        self.source = HttpSource(http)
        # What fetch parsed and decrypted, for verify_patient(..., opened=client.opened).
        self.opened = Opened()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return raise_for_refusal(self.http.post(path, json=body), AccessError)

    def fetch(
        self,
        group_id: int,
        patient: str,
        *,
        after_number: int = 0,
        number: int | None = None,
        break_glass: tuple[Ledger, int, int, bytes] | None = None,
    ) -> list[FetchedBlock]:
        """Blocks of ``patient``; ``break_glass=(ledger, scope, reason_code, reason)`` first
        records an emergency access on chain, with its reason, under the provider's own key."""
        if break_glass is not None:
            ledger, scope, code, reason = break_glass
            ledger.break_glass(self.key, patient, scope, code, reason)
        challenge = Challenge.parse_value(
            self._post("/v1/store/challenges", {"v": 1, "provider": self.key.address})
        )
        nonce = bytes.fromhex(challenge.nonce)
        signature = self.key.sign(
            access_message(nonce, group_id, patient, after_number, number), ACCESS_CONTEXT
        )
        body = AccessResponse.parse_value(
            self._post(
                "/v1/store/access",
                {
                    "v": 1,
                    "provider": self.key.address,
                    "group_id": group_id,
                    "patient": patient,
                    "after_number": after_number,
                    "number": number,
                    "nonce": nonce.hex(),
                    "signature": signature.to_rsv().hex(),
                },
            )
        )
        fetched = []
        for item in body.blocks:
            data = bytes.fromhex(item.block)
            stanza = KeyEntry.parse(bytes.fromhex(item.stanza)) if item.stanza else None
            block = self.opened.block(data)
            self.source.remember(group_id, item.leaf_index, block, data, stanza)
            fetched.append(FetchedBlock(block, stanza, self.opened))
        self.source.numbers[(group_id, patient)] = list(body.numbers)
        return fetched
