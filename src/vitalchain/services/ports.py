"""Loopback ports for the local services: pick a free one, ask whether one is free or served.

The one copy of these: the anvil, PostgreSQL and mosquitto supervisors, the node's embedded
HTTP server, the CLI's port check and the tests all take their ports from here.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Final

__all__ = ["LOOPBACK", "accepts", "free_port", "port_free"]

LOOPBACK: Final = "127.0.0.1"  # every local service listens here only


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel just handed out on ``host``; free now, not reserved (another process
    may still take it before ours binds, which is why the supervisors retry)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``host:port`` now.

    The test bind sets SO_REUSEADDR, as anvil and uvicorn do for their own listeners, so a
    port whose last connections sit in TIME_WAIT (for a minute after a node stops) counts as
    free: only a live listener (or a bound socket without the option) makes it busy.
    """
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def accepts(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        return s.connect_ex((host, port)) == 0
