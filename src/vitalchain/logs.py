"""What may go in a log line about a person, and how often a repeated condition is logged.

Logs are read by operators and shipped to log stores that are not under the data's access
control, so no patient (or device) address goes in one: an address is a stable identifier
that the chain links to consents, devices and anchors.  :func:`pseudonym` gives a short tag
instead, stable within one process (so the lines about one patient can be followed) and
unlinkable to the address without this process's salt (so a log cannot be joined with the
public chain).  An operator who must find the patient behind a tag asks the running gateway,
which can compute the tag of each known address (:func:`pseudonym` with the same salt).

A condition that holds for a while (a patient with no published key, a failing chain call)
would otherwise be logged on every tick; :class:`Transitions` logs it when it starts, when it
changes, and when it ends.

The HTTP client vitalchain uses (httpx) logs every request's URL at INFO, and our URLs name
devices and alert recipients (``/v1/alerts?address=…``, ``/v1/devices/{device}/…``), so
this module, imported by every layer, raises that logger to WARNING once.

This module sits at the bottom of the layers (docs/architecture.md): every layer may import it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading

__all__ = ["Transitions", "pseudonym", "safe_error"]

_SALT = os.urandom(16)
# httpx's "HTTP Request: GET <url>" lines would name devices and recipients (see above).
logging.getLogger("httpx").setLevel(logging.WARNING)


def pseudonym(address: str) -> str:
    """``"p:"`` and 8 hex digits of SHA-256(salt ‖ address), case-folded: the checksummed and
    the lowercase spelling of one address get the same tag."""
    digest = hashlib.sha256(_SALT + address.strip().lower().encode()).hexdigest()
    return "p:" + digest[:8]


def safe_error(exc: BaseException) -> str:
    """An exception as a log may show it: its machine-readable code if it has one, else its
    type name in snake case (``InvalidAddress`` → ``invalid_address``).  Never its message,
    which may quote an address or a value."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type(exc).__name__).lower()


class Transitions:
    """The last state seen per key; :meth:`change` says whether it differs (log only then)."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def change(self, key: str, state: str | None) -> str | None:
        """Record ``state`` (None: fine) for ``key``; return the previous state if this is a
        transition (``""`` for "was fine"), else None."""
        with self._lock:
            before = self._states.get(key)
            if before == state:
                return None
            if state is None:
                del self._states[key]
            else:
                self._states[key] = state
            return "" if before is None else before

    def current(self) -> dict[str, str]:
        with self._lock:
            return dict(self._states)
