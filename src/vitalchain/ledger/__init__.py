"""The ledger: vitalchain's contracts behind one Python interface, on any backend.

- :class:`Ledger`: domain operations (trust groups, keys, consent, anchors, alerts); it
  implements every narrow per-contract port of :mod:`vitalchain.ledger.ports`, and each
  consumer takes only the port it uses.
- :class:`ChainWatcher`: the one follower of the contracts' events in a process, subscribed
  to by :class:`EventName` (:mod:`vitalchain.ledger.events`).
- :class:`ConsentView`: who may read a patient's vitals now, cached and kept fresh by the
  watcher (the sealer and the alarm service share it).
- Backends: :class:`EmbeddedBackend` (eth-tester + py-evm in process, the default) and
  :class:`RpcBackend` (any JSON-RPC node: Besu/geth in production, anvil in tests).
- Errors: :mod:`vitalchain.ledger.errors`, decoded from the contracts' custom errors.
- :class:`ChainOutbox`: the durable, pipelined queue of one key's transactions (the gateway
  master's alert records, anchors and associations), each resolved through a :class:`Ticket`.
"""

from vitalchain.ledger.backends import ANVIL_DEV_KEY, ChainBackend, EmbeddedBackend, RpcBackend
from vitalchain.ledger.consent import ConsentView
from vitalchain.ledger.errors import (
    AlertError,
    AnchorError,
    ChainUnavailable,
    ConsentError,
    ContractError,
    KeyDirectoryError,
    LedgerError,
    NotSupported,
    TransactionFailed,
    TrustGroupsError,
)
from vitalchain.ledger.events import Event, EventIndex, EventName
from vitalchain.ledger.ledger import (
    Anchor,
    Consent,
    ConsentStatus,
    Deployment,
    Device,
    DeviceStatus,
    Group,
    Ledger,
    TxResult,
)
from vitalchain.ledger.outbox import ChainOutbox, ChainWriter, Outcome, Ticket
from vitalchain.ledger.watcher import ChainWatcher

__all__ = [
    "ANVIL_DEV_KEY",
    "AlertError",
    "Anchor",
    "AnchorError",
    "ChainBackend",
    "ChainOutbox",
    "ChainUnavailable",
    "ChainWatcher",
    "ChainWriter",
    "Consent",
    "ConsentError",
    "ConsentStatus",
    "ConsentView",
    "ContractError",
    "Deployment",
    "Device",
    "DeviceStatus",
    "EmbeddedBackend",
    "Event",
    "EventIndex",
    "EventName",
    "Group",
    "KeyDirectoryError",
    "Ledger",
    "LedgerError",
    "NotSupported",
    "Outcome",
    "RpcBackend",
    "Ticket",
    "TransactionFailed",
    "TrustGroupsError",
    "TxResult",
]
