"""``vitalchain gateway``: run the API Edge (onboarding, telemetry, store access, alerts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["gateway_app"]

gateway_app = typer.Typer(
    help="Run and operate an edge gateway.", no_args_is_help=True, rich_markup_mode="markdown"
)


@gateway_app.command("run")
def gateway_run(
    data_dir: Annotated[
        Path, typer.Option(help="Where the gateway keeps its key and stores.")
    ] = Path("var/gateway"),
    host: Annotated[
        str, typer.Option(help="HTTP listen address (keep it on loopback in dev).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port.")] = 8700,
    group_id: Annotated[int, typer.Option(min=1, help="This gateway's trust group ID.")] = 1,
    rpc_url: Annotated[
        str | None, typer.Option(help="Ethereum JSON-RPC URL; default: in-process chain.")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(envvar="VITALCHAIN_GATEWAY_ADMIN_TOKEN", help="Bearer token for admin calls."),
    ] = None,
    mqtt: Annotated[
        bool, typer.Option(help="Start mosquitto and accept telemetry over MQTT too.")
    ] = True,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT port (default: a free one).")] = None,
) -> None:
    """Run the API Edge: onboarding and telemetry over HTTP (and MQTT).

    With --rpc-url, the contracts named by DATA_DIR/deployment.json are used (`chain start`
    and `chain deploy` write it there by default); without that file they are deployed.
    """
    from pydantic import SecretStr

    from vitalchain.gateway.settings import GatewaySettings
    from vitalchain.node import serve

    settings = GatewaySettings(
        data_dir=data_dir,
        host=host,
        port=port,
        group_id=group_id,
        rpc_url=rpc_url,
        admin_token=SecretStr(admin_token) if admin_token else None,
        mqtt=mqtt,
        mqtt_port=mqtt_port,
    )
    serve(settings)
