"""The cloud store: verified device messages, kept durably (and, later, sealed into blocks).

- :class:`SqliteStore`: the embedded default (SQLite WAL, group commit, ``synchronous=FULL``).
- :mod:`.model`: ``Message``, ``Reading``, ``StoredMessage``.
"""

from vitalchain.store.errors import DuplicateReading, StoreError
from vitalchain.store.model import MAX_SEQ, Message, Reading, StoredMessage
from vitalchain.store.sqlite import SqliteStore

__all__ = [
    "MAX_SEQ",
    "DuplicateReading",
    "Message",
    "Reading",
    "SqliteStore",
    "StoreError",
    "StoredMessage",
]
