"""Helpers of the ledger tests: fresh ids, funded keys, a new trust group, an association, and
``refused`` (a chain refusal with its code).  The backend-neutral suite is
tests/unit/ledger/test_ledger.py; contracts are deployed once per module and backend, and each
test uses fresh keys and ids so tests stay independent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from vitalchain.crypto import PrivateKey
from vitalchain.ledger import (
    Ledger,
)

_ids = itertools.count(1_000_000)


def fresh_id() -> int:
    return next(_ids)


@dataclass
class GroupFixture:
    gid: int
    master: PrivateKey


def funded(ledger: Ledger) -> PrivateKey:
    key = PrivateKey.generate()
    ledger.fund(key.address)
    return key


def new_group(ledger: Ledger) -> GroupFixture:
    master = funded(ledger)
    gid = fresh_id()
    ledger.create_group(master, gid, fresh_id())
    return GroupFixture(gid, master)


def associate(
    ledger: Ledger, g: GroupFixture, device: PrivateKey | None = None, oid: int | None = None
):
    device = device or PrivateKey.generate()
    oid = oid if oid is not None else fresh_id()
    token = ledger.issue_token(g.master, g.gid, oid, device.address)
    request = ledger.sign_association(device, g.gid, oid, token)
    ledger.associate(g.master, g.gid, oid, device.public_key, token, request)
    return device, oid


class refused:  # noqa: N801 - reads as a context manager, like pytest.raises
    """``with refused(TrustGroupsError, "trust_groups.object_id_taken"):`` checks type and code."""

    def __init__(self, exc_type: type[Exception], code: str) -> None:
        self._raises = pytest.raises(exc_type)
        self._code = code

    def __enter__(self) -> None:
        self._info = self._raises.__enter__()

    def __exit__(self, *exc: object) -> bool:
        handled = self._raises.__exit__(*exc)  # type: ignore[arg-type]
        assert self._info.value.code == self._code, str(self._info.value)  # type: ignore[attr-defined]
        assert str(self._info.value)
        return bool(handled)
