"""Who may read a patient's vitals now: the one rule, and the one cache of what it reads.

The sealer wraps each block's key for these readers, and the alarm service encrypts each
alert for them; before, each kept its own copy of the consents and its own variant of the
rule.  :class:`ConsentView` reads a patient's providers and their consents once, and drops
them when the :class:`~vitalchain.ledger.watcher.ChainWatcher` reports a ConsentRegistry event
about the patient; public keys likewise, until a ``KeyPublished`` event (a key, once
published, never changes, so a found key stays).  Nothing here writes to the chain.

The rule (:func:`may_read`): a granted consent whose scope covers every vital asked for, and
that expires more than :data:`EXPIRY_MARGIN_S` after ``now``, may read.  Near its expiry, or
during an emergency access (whose scope ``consentOf`` does not give), the contract decides
(``hasAccess``, judged by the time of the block its call runs in).  If the chain cannot be
asked, :meth:`ConsentView.readers` raises for a block (sealing waits out the outage), but for
an alarm (``outage_fallback``) a covering consent not yet expired at ``now`` reads: an alarm
must reach its care team while the chain is away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from vitalchain.crypto.keys import PublicKey
from vitalchain.ledger.errors import ChainUnavailable
from vitalchain.ledger.events import CONSENT_EVENTS, KEY_PUBLISHED, Event
from vitalchain.ledger.ledger import Consent, ConsentStatus
from vitalchain.ledger.ports import ConsentChain
from vitalchain.ledger.watcher import ChainWatcher

__all__ = ["EXPIRY_MARGIN_S", "ConsentView", "may_read"]

# A consent this close to its expiry (by ``now``) is left to the contract, which judges it by
# the time of the block its call runs in.
EXPIRY_MARGIN_S = 60


def may_read(consent: Consent, vitals: int, now: float) -> bool | None:
    """Whether ``consent`` lets its provider read ``vitals`` (scope bits; 0: any) at ``now``
    (chain seconds): True, False, or None where only the contract can tell."""
    covers = _covers(consent, vitals)
    if covers and now + EXPIRY_MARGIN_S < consent.expires_at:
        return True
    if (covers and now - EXPIRY_MARGIN_S < consent.expires_at) or (
        now - EXPIRY_MARGIN_S < consent.break_glass_until
    ):
        return None
    return False


def _covers(consent: Consent, vitals: int) -> bool:
    return consent.status is ConsentStatus.GRANTED and consent.scope & vitals == vitals


class ConsentView:
    """The cached consents and keys of the patients a gateway serves (see the module)."""

    def __init__(self, chain: ConsentChain, watcher: ChainWatcher) -> None:
        self._chain = chain
        self._watcher = watcher
        self._consents: dict[str, dict[str, Consent]] = {}  # patient -> provider -> consent
        self._keys: dict[str, PublicKey] = {}
        # Bumped by every event that drops an entry: a chain read that a drop overtook may be
        # older than its event, so it is used but not kept.
        self._generation = 0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []
        watcher.subscribe(CONSENT_EVENTS, self._on_consent)
        watcher.subscribe(KEY_PUBLISHED, self._on_key)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(address)`` when an event drops what is cached for ``address`` (a
        patient's consents, an account's key), e.g. to read it again ahead of need."""
        self._listeners.append(listener)

    def refresh(self) -> None:
        """Apply the chain's events up to now (the watcher's poll, for every subscriber)."""
        self._watcher.poll()

    # -- consents --------------------------------------------------------------------------------

    def consents(self, patient: str) -> Mapping[str, Consent]:
        """Every provider of ``patient`` with its consent, in grant order (cached)."""
        with self._lock:
            cached = self._consents.get(patient)
            generation = self._generation
        if cached is None:
            providers = self._chain.providers_of(patient)
            cached = {p: self._chain.consent_of(patient, p) for p in providers}
            with self._lock:
                if generation == self._generation:
                    self._consents[patient] = cached
        return cached

    def readers(
        self, patient: str, vitals: int, now: float | None = None, *, outage_fallback: bool = False
    ) -> list[str]:
        """The providers who may read ``vitals`` of ``patient`` at ``now`` (seconds; default
        the latest block's time), by :func:`may_read`, in grant order.  ``outage_fallback``:
        where the contract cannot be asked, a covering consent unexpired at ``now`` reads
        (an alarm's recipients); else the outage raises (a block's)."""
        consents = self.consents(patient)
        if now is None:
            now = self._chain.timestamp()
        chosen = []
        for provider, consent in consents.items():
            verdict = may_read(consent, vitals, now)
            if verdict is None:
                try:
                    verdict = self._chain.has_access(patient, provider, vitals)
                except ChainUnavailable:
                    if not outage_fallback:
                        raise
                    verdict = _covers(consent, vitals) and now < consent.expires_at
            if verdict:
                chosen.append(provider)
        return chosen

    def _on_consent(self, event: Event) -> None:
        self._drop(self._consents, event.args.get("patient"))

    # -- keys --------------------------------------------------------------------------------------

    def cached_key(self, address: str) -> PublicKey | None:
        """The account's key if this view has read it, without asking the chain."""
        with self._lock:
            return self._keys.get(address)

    def key_of(self, address: str) -> PublicKey | None:
        """The account's published key (None: it has published none yet)."""
        key = self.cached_key(address)
        if key is not None:
            return key
        if not self._chain.has_key(address):
            return None
        key = self._chain.public_key_of(address)
        with self._lock:
            self._keys[address] = key
        return key

    def _on_key(self, event: Event) -> None:
        self._drop(self._keys, event.args.get("account"))

    def _drop(self, cache: dict[str, Any], address: str | None) -> None:
        """An event made ``cache``'s entry for ``address`` stale: the next read asks the chain
        (a read in flight is not kept, see ``_generation``), and the listeners are told."""
        if address is None:
            return
        with self._lock:
            cache.pop(address, None)
            self._generation += 1
        for listener in self._listeners:
            listener(address)
