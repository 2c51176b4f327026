"""Ledger errors: contract reverts decoded from their custom errors, and transport failures.

Tree (under :class:`vitalchain.errors.VitalchainError`)::

    LedgerError
     ├── ContractError            a contract refused the call; ``contract``, ``reason``, ``fields``
     │    ├── TrustGroupsError
     │    ├── KeyDirectoryError
     │    ├── ConsentError
     │    ├── AnchorError
     │    └── AlertError
     ├── TransactionFailed        reverted without a decodable reason (out of gas, panic)
     ├── ChainUnavailable         the node is gone, refuses, or does not answer in time
     └── NotSupported             the backend cannot do this (e.g. time travel on a live node)
"""

from __future__ import annotations

import re
from typing import Any

from vitalchain.errors import VitalchainError

__all__ = [
    "AlertError",
    "AnchorError",
    "ChainUnavailable",
    "ConsentError",
    "ContractError",
    "KeyDirectoryError",
    "LedgerError",
    "NotSupported",
    "TransactionFailed",
    "TrustGroupsError",
]


class LedgerError(VitalchainError):
    code = "ledger_error"


class TransactionFailed(LedgerError):
    code = "transaction_failed"


class NotSupported(LedgerError):
    code = "not_supported"


class ChainUnavailable(LedgerError):
    """The node could not be reached or did not answer in time: a transport failure, not a
    refusal.  One type for every way a node goes away (refused connection, reset, timeout,
    HTTP error from a proxy), so callers answer 503 and retry later instead of crashing."""

    code = "chain_unavailable"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


# Human wording for each custom error; {field} names come from the ABI.
_MESSAGES = {
    "InvalidGroupId": "group ID 0 is reserved",
    "GroupIdTaken": "group ID {groupId} is already taken",
    "UnknownGroup": "no group {groupId}",
    "ObjectIdTaken": "object ID {objectId} is already taken",
    "AddressTaken": "address {account} already belongs to a group",
    "MasterCannotAssociate": "{account} is a group master and cannot join as a device",
    "InvalidPublicKeyLength": "public keys are 64 bytes, got {length}",
    "PublicKeyMismatch": "public key derives to {derived}, not the caller {expected}",
    "InvalidToken": (
        "the token for {device} (object {objectId}) is not signed by group {groupId}'s master"
    ),
    "InvalidDeviceSignature": "the association request is not signed by device {device}",
    "RequestAlreadyUsed": "this association request for {device} was already used (replay)",
    "NotMaster": "{caller} is not the master of group {groupId}",
    "DeviceNotInGroup": "device {device} is not in group {groupId}",
    "DeviceAlreadyRevoked": "device {device} is already revoked",
    "InvalidRotationSignature": "the new master key {newMaster} did not sign the rotation",
    "UnknownDevice": "no device {device}",
    "AlreadyPublished": "{account} has already published a key",
    "NoKey": "{account} has published no key",
    "NotProvider": "{account} is not a registered provider",
    "AlreadyProvider": "{provider} is already a registered provider",
    "InvalidScope": "consent scope {scope:#x} is empty or names no known vital",
    "InvalidPatient": "invalid patient address",
    "ExpiryNotInFuture": "expiry {expiresAt} is not after the current block time {nowTimestamp}",
    "AlreadyGranted": "{provider} already holds a consent from {patient}",
    "NoPendingRequest": "{provider} has no pending request with {patient}",
    "NotGranted": "{patient} has not granted {provider} access",
    "ReasonRequired": "break-glass access needs a reason code",
    "SizeNotGrowing": "anchored tree size must grow: {given} after {previous}",
    "InvalidRange": "invalid range",
    "ZeroRoot": "the Merkle root is zero",
    "ZeroAddress": "zero address",
    "InvalidVital": "unknown vital kind {vital}",
    "NotAuthorized": "{caller} may not set thresholds for {patient}",
    "NoPolicy": "no threshold set for vital {vital} of {patient}",
    "InvalidKeyImage": "a key image is a 33-byte compressed point",
    "KeyImageUsed": "key image {keyImageHash} was already used (replayed alert)",
    "AccessControlUnauthorizedAccount": "{account} lacks role {neededRole}",
}


class ContractError(LedgerError):
    """A custom error from a contract, with its decoded fields."""

    def __init__(self, contract: str, reason: str, fields: dict[str, Any]) -> None:
        self.contract = contract
        self.reason = reason
        self.fields = fields
        template = _MESSAGES.get(reason)
        shown = {k: (f"0x{v.hex()}" if isinstance(v, bytes) else v) for k, v in fields.items()}
        try:
            text = template.format(**shown) if template else None
        except (KeyError, ValueError):
            text = None
        text = text or f"{reason}({', '.join(f'{k}={v}' for k, v in shown.items())})"
        super().__init__(f"{contract}: {text}", code=f"{_snake(contract)}.{_snake(reason)}")


class TrustGroupsError(ContractError):
    pass


class KeyDirectoryError(ContractError):
    pass


class ConsentError(ContractError):
    pass


class AnchorError(ContractError):
    pass


class AlertError(ContractError):
    pass


ERROR_CLASSES: dict[str, type[ContractError]] = {
    "TrustGroups": TrustGroupsError,
    "KeyDirectory": KeyDirectoryError,
    "ConsentRegistry": ConsentError,
    "AnchorLog": AnchorError,
    "AlertRegistry": AlertError,
}
