"""What every view of the portal shares: the user, their key, the chain and the gateways.

Why one object: the provider's, the patient's and the inbox's views all ask the same
questions (who am I, which gateways, which group is a gateway's, the clock), and each
answer has one owner here rather than one per view.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import VitalchainError
from vitalchain.ledger import Ledger
from vitalchain.logs import pseudonym
from vitalchain.sdk.provider import ProviderClient

__all__ = ["GatewayLink", "Portal", "PortalError", "Role"]


class Role(StrEnum):
    PROVIDER = "provider"
    PATIENT = "patient"


class PortalError(VitalchainError):
    """A refusal of the portal's own (a bad form field, an unknown patient); its code is in
    the edge's table, so the page shows the status every other refusal of that code has."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass
class GatewayLink:
    """One gateway the user named: its URL, an HTTP client to it, and its trust group (asked
    of its ``/v1/health`` once, when first needed)."""

    url: str
    http: httpx.Client
    _group_id: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def group_id(self) -> int:
        with self._lock:
            if self._group_id is None:
                response = self.http.get("/v1/health")
                body = response.json() if response.status_code == 200 else None
                if not isinstance(body, dict) or not isinstance(body.get("group_id"), int):
                    raise PortalError(
                        "not_a_gateway", f"{self.url} does not answer like a vitalchain gateway"
                    )
                self._group_id = body["group_id"]
            return self._group_id


@dataclass
class Portal:
    """The portal's state: the user (``role``, ``key``), the chain, the gateways, and the
    injected clock and randomness."""

    role: Role
    key: PrivateKey
    ledger: Ledger
    gateways: list[GatewayLink]
    clock: Callable[[], float]
    random: Callable[[int], bytes]
    login_token: str
    _readers: dict[str, ProviderClient] = field(default_factory=dict, repr=False)

    @property
    def me(self) -> str:
        return self.key.address

    @property
    def my_pseudonym(self) -> str:
        return pseudonym(self.key.address)

    def gateway(self, group_id: int) -> GatewayLink:
        """The gateway of ``group_id`` among those named; 404 ``not_found`` otherwise."""
        for link in self.gateways:
            if link.group_id == group_id:
                return link
        raise PortalError("not_found", f"no gateway of group {group_id} was named")

    def reader(self, link: GatewayLink) -> ProviderClient:
        """The SDK's provider client for a gateway (one per gateway: it caches what it
        opened, so a chart and a verify badge decrypt each block once)."""
        found = self._readers.get(link.url)
        if found is None:
            found = self._readers[link.url] = ProviderClient(self.key, link.http)
        return found
