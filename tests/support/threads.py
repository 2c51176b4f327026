"""Running a function in several threads at once, for tests of what must hold under races."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_together(target: Callable[..., Any], args: Iterable[tuple[Any, ...]]) -> None:
    """``target(*a)`` for each ``a`` in ``args``, each in its own thread, all started before
    any is joined; returns when all have finished."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
