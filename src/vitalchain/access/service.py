"""The store's provider access API (docs/spec/access.md): the store's side; the
provider's client is :mod:`vitalchain.sdk.provider`.

Routes parse and call :class:`AccessService`; the service asks the chain about consent at
every request and releases ciphertext only (each provider's own key-ring entry with it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from vitalchain.crypto.keys import PublicKey, Signature, message_digest
from vitalchain.edge.codes import openapi_refusals
from vitalchain.errors import DecodeError, InvalidSignature
from vitalchain.ledger import ConsentStatus, Ledger
from vitalchain.sdk.provider import AccessError
from vitalchain.sdk.source import StoreSource
from vitalchain.store.base import BlockStore
from vitalchain.wire.access import (
    ACCESS_CONTEXT,
    NONCE_TTL_S,
    AccessResponse,
    Challenge,
    ReleasedBlock,
    access_message,
)
from vitalchain.wire.address import Address
from vitalchain.wire.block import Block, KeyEntry

__all__ = ["AccessService", "create_access_router", "mount_access"]


class AccessService:
    def __init__(
        self,
        store: BlockStore,
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.random = random
        self.source = StoreSource(store)
        self._purged_at = float("-inf")

    def challenge(self, provider: str) -> Challenge:
        now = self.clock()
        if now - self._purged_at >= NONCE_TTL_S:
            # Amortised: expired challenges go at most one lifetime after they expire, so a
            # stream of unanswered challenges cannot grow the table (a gateway node's periodic
            # purge does the same; this covers an access API served without one).
            self._purged_at = now
            self.store.purge_nonces(int(now * 1000))
        nonce = self.random(32)
        expires_at = int(now) + NONCE_TTL_S
        self.store.add_nonce(nonce, provider, expires_at * 1000)
        return Challenge(v=1, nonce=nonce.hex(), expires_at=expires_at)

    def authenticate(
        self,
        *,
        provider: str,
        group_id: int,
        patient: str,
        after_number: int,
        number: int | None,
        nonce: bytes,
        signature: bytes,
    ) -> None:
        """The request is ``provider``'s, over a challenge it had and nobody used: the
        challenge is spent."""
        digest = message_digest(
            access_message(nonce, group_id, patient, after_number, number), ACCESS_CONTEXT
        )
        try:
            signer = PublicKey.recover(Signature.from_rsv(signature), digest).address
        except (InvalidSignature, DecodeError):
            signer = None
        if signer != provider:
            raise AccessError("invalid_signature", "the request is not signed by the provider")
        if not self.store.consume_nonce(nonce, provider, int(self.clock() * 1000)):
            raise AccessError("challenge_invalid", "unknown, used or expired challenge")

    def fetch(
        self, *, provider: str, group_id: int, patient: str, after_number: int, number: int | None
    ) -> AccessResponse:
        """The patient's blocks, if the chain says ``provider``'s consent covers them now;
        the request is already authenticated (:meth:`authenticate`)."""
        if number is not None:
            found = self.store.patient_block(group_id, patient, number)
            blocks = [] if found is None else [found]
        else:
            blocks = self.store.blocks(group_id, patient, after_number)
        if not blocks:
            raise AccessError("unknown_block", "no such block")
        # Consent is judged per section scope (block.md v2): a provider is given the
        # sections its consent covers now, and the others' digests only.  A patient's own
        # signed request needs no consent record: patients own their data.
        verdicts: dict[int, bool] = {}

        def may(scope: int) -> bool:
            if provider == patient:
                return True
            if scope not in verdicts:
                verdicts[scope] = self.ledger.has_access(patient, provider, scope)
            return verdicts[scope]

        me = bytes.fromhex(provider[2:])
        released = []
        for block in blocks:
            released.append(self._release(block, me, [may(s.scope) for s in block.sections]))
        if not any(verdicts.values()) and provider != patient:
            scope = 0
            for block in blocks:
                scope |= block.vitals
            raise self._why_not(patient, provider, scope)
        numbers = self.store.block_numbers(group_id, patient)
        return AccessResponse(v=1, numbers=numbers, blocks=released)

    def _release(self, block: Block, me: bytes, readable: list[bool]) -> ReleasedBlock:
        """``block`` as a reader who may open the ``readable`` sections gets it: the others'
        payloads withheld (a version-1 block, one payload, goes whole), and the reader's own
        key-ring entry cut to the readable sections (None: nothing it may open)."""
        keep = [i for i, ok in enumerate(readable) if ok]
        mine = next((e for e in self.store.stanzas(block.group_id, block.leaf_index)
                     if e.recipient == me), None)  # fmt: skip
        if mine is not None:
            stanzas = tuple((i, s) for i, s in mine.stanzas if i in keep)
            mine = KeyEntry(me, stanzas) if stanzas else None
        shown = block if block.version == 1 else block.redacted(keep)
        return ReleasedBlock(
            group_id=block.group_id,
            leaf_index=block.leaf_index,
            number=block.number,
            block=shown.encode().hex(),
            stanza=None if mine is None else mine.encode().hex(),
        )

    def _why_not(self, patient: str, provider: str, scope: int) -> AccessError:
        consent = self.ledger.consent_of(patient, provider)
        now = self.ledger.timestamp()  # expiry is the chain's judgement, in chain time
        if consent.status is ConsentStatus.GRANTED and consent.expires_at <= now:
            return AccessError("consent_expired", "the patient's consent has expired")
        if consent.status is ConsentStatus.GRANTED and scope & ~consent.scope:
            return AccessError(
                "out_of_scope", "the consent covers none of the vitals in these blocks"
            )
        return AccessError("no_consent", "no valid consent from this patient for this provider")


# -- HTTP ----------------------------------------------------------------------------------------

_HEX = r"^[0-9a-fA-F]*$"
# Numbers that reach SQL are BIGINT: bounded in the schema, so a larger one is a 422.
GroupId = Annotated[int, Path(ge=1, lt=2**63)]
# The access routes' refusals, for the OpenAPI (the alert routes': alerts/delivery.py).
REFUSALS = openapi_refusals(400, 401, 403, 404, 409, 422, 429, 503)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChallengeRequest(_Strict):
    v: Literal[1]
    provider: Address


class AccessRequest(_Strict):
    v: Literal[1]
    provider: Address
    group_id: int = Field(ge=1, lt=2**63)
    patient: Address
    after_number: int = Field(0, ge=0, lt=2**63)
    number: int | None = None
    nonce: str = Field(pattern=_HEX, min_length=64, max_length=64)
    signature: str = Field(pattern=_HEX, min_length=130, max_length=130)


async def _service(request: Request) -> AccessService:
    service: AccessService = request.app.state.access
    return service


ServiceDep = Annotated[AccessService, Depends(_service)]


def _signed(body: AccessRequest, service: ServiceDep) -> AccessRequest:
    """The request, once its provider's signature over a fresh challenge checked out."""
    if body.number is not None and not 1 <= body.number < 2**63:
        raise AccessError("invalid_request", "number is a block number from 1")
    service.authenticate(
        provider=body.provider,
        group_id=body.group_id,
        patient=body.patient,
        after_number=body.after_number,
        number=body.number,
        nonce=bytes.fromhex(body.nonce),
        signature=bytes.fromhex(body.signature),
    )
    return body


SignedDep = Annotated[AccessRequest, Depends(_signed)]


def create_access_router() -> APIRouter:
    router = APIRouter(prefix="/v1/store", tags=["store"])

    @router.post("/challenges", status_code=201, responses=REFUSALS)
    def challenge(body: ChallengeRequest, service: ServiceDep) -> Challenge:
        """A one-time nonce for the provider's next signed request."""
        return service.challenge(body.provider)

    @router.post("/access", responses=REFUSALS)
    def access(body: SignedDep, service: ServiceDep) -> AccessResponse:
        """Ciphertext of the patient's blocks, if the chain says the consent is valid now."""
        return service.fetch(
            provider=body.provider,
            group_id=body.group_id,
            patient=body.patient,
            after_number=body.after_number,
            number=body.number,
        )

    @router.get("/groups/{group_id}/proofs/inclusion", responses=REFUSALS)
    def inclusion(
        group_id: GroupId,
        service: ServiceDep,
        leaf_index: Annotated[int, Query(ge=0, lt=2**63)],
        tree_size: Annotated[int, Query(ge=1, lt=2**63)],
    ) -> dict[str, Any]:
        """RFC 9162 inclusion proof: hashes only (``unknown_block`` beyond the log)."""
        proof = service.source.inclusion_proof(group_id, leaf_index, tree_size)
        return {"v": 1, "proof": proof.to_bytes().hex()}

    @router.get("/groups/{group_id}/proofs/consistency", responses=REFUSALS)
    def consistency(
        group_id: GroupId,
        service: ServiceDep,
        size1: Annotated[int, Query(ge=0, lt=2**63)],
        size2: Annotated[int, Query(ge=0, lt=2**63)],
    ) -> dict[str, Any]:
        """RFC 9162 consistency proof between two sizes of the group's log."""
        proof = service.source.consistency_proof(group_id, size1, size2)
        return {"v": 1, "proof": proof.to_bytes().hex()}

    return router


def mount_access(app: FastAPI, service: AccessService) -> None:
    """Serve the access API from ``app`` (built with the edge's error handlers installed:
    vitalchain.edge.server, as gateway.app.create_app does)."""
    app.state.access = service
    app.include_router(create_access_router())
