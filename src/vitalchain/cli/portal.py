"""``vitalchain portal``: the care portal for one provider or one patient, on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer

from vitalchain.cli._common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_GATEWAY,
    DEFAULT_RPC,
    BadArgument,
    DeploymentOpt,
    RpcOpt,
    fail,
    gateway_client,
    gateway_health,
    open_chain,
    read_key,
    stdout,
)

__all__ = ["portal"]


def portal(
    key: Annotated[
        Path, typer.Option("--key", help="Your key file (the provider's or the patient's).")
    ],
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway", help="A gateway (and store) base URL; repeat for several groups."
        ),
    ] = None,
    role: Annotated[
        str, typer.Option("--role", help="provider (alert inbox, patients) or patient.")
    ] = "provider",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")
    ] = 8800,
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
) -> None:
    """Run the care portal: a local web app that decrypts and verifies on your side.

    It prints a login link with a one-time token, as Jupyter does; open it in a browser on
    this machine.  Ctrl-C stops it.
    """
    from vitalchain.portal.app import bound, serve
    from vitalchain.portal.core import GatewayLink, Portal, Role

    try:
        who = Role(role.strip().lower())
    except ValueError:
        raise BadArgument(
            f"{role!r} is not a role; choose provider or patient", "--role", code="invalid_role"
        ) from None
    me = read_key(key)
    clients = [gateway_client(url) for url in gateway or [DEFAULT_GATEWAY]]  # URLs checked
    console = stdout()
    try:
        sock = bound(port)  # before anything is contacted: a taken port fails at once
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})", why="port_in_use")
    with sock:
        for http in clients:
            gateway_health(http)  # fails clearly now rather than on the first page
        ledger = open_chain(rpc_url, deployment)
        state = Portal(
            role=who,
            key=me,
            ledger=ledger,
            gateways=[GatewayLink(str(http.base_url).rstrip("/"), http) for http in clients],
            clock=time.time,
            random=os.urandom,
            login_token=secrets.token_urlsafe(24),
        )
        serve(
            state,
            sock,
            lambda url: console.print(
                f"The care portal ({who.value}) is running. Open, on this machine:\n  {url}\n"
                "Ctrl-C stops it.",
                soft_wrap=True,
            ),
        )
