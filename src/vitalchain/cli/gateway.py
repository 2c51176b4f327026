"""``vitalchain gateway``: run the API Edge (onboarding, telemetry, store access, alerts).

Every setting is a ``GatewaySettings`` field, read from ``VITALCHAIN_GATEWAY_<FIELD>``; an
option given on the command line overrides its variable, and an option not given leaves it
alone (the options default to unset, never to a value of their own, which would silently
shadow the environment).  The admin token is never an option: a command line is visible to
every local user in the process list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vitalchain.cli._common import (
    ADMIN_TOKEN_ENV,
    AdminTokenFlag,
    BadArgument,
    admin_token,
    check_data_dir,
    command_group,
    fail,
    parse_http_url,
    stdout,
)

if TYPE_CHECKING:
    from vitalchain.gateway.settings import GatewaySettings
    from vitalchain.node import RunningGateway

__all__ = ["ENV_PREFIX", "build_settings", "gateway_app"]

ENV_PREFIX = "VITALCHAIN_GATEWAY_"
TOKEN_ENV = ADMIN_TOKEN_ENV

gateway_app = command_group("Run and operate an edge gateway.")

# The option each settings field is given by, where it has one.
_OPTION_OF = {
    "data_dir": "--data-dir",
    "host": "--host",
    "port": "--port",
    "group_id": "--group-id",
    "rpc_url": "--rpc-url",
    "admin_token": "--admin-token-file",
    "mqtt": "--mqtt/--no-mqtt",
    "mqtt_port": "--mqtt-port",
}


def build_settings(given: dict[str, Any]) -> GatewaySettings:
    """``GatewaySettings`` from the environment, overridden by the options ``given`` (those
    not None); a bad value is one line naming its option or variable (exit 2)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from vitalchain.gateway.settings import GatewaySettings

    fields = GatewaySettings.model_fields
    unknown = sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper().removeprefix(ENV_PREFIX).lower() not in fields
    )
    if unknown:
        raise BadArgument(
            "not a gateway setting (docs/cli.md lists them): a typo? unset it",
            unknown[0],
            code="unknown_setting",
        )
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        return GatewaySettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = _OPTION_OF.get(field, "") if field in overrides else f"{ENV_PREFIX}{field.upper()}"
        raise BadArgument(
            first["msg"].removeprefix("Value error, "), where or field, code="invalid_setting"
        ) from None
    except SettingsError as exc:  # a variable that is not JSON where JSON is expected
        raise BadArgument(str(exc), ENV_PREFIX + "*", code="invalid_setting") from None


def _token(path: Path | None) -> Any:
    """The token of --admin-token-file; None leaves the setting to the environment."""
    from pydantic import SecretStr

    token = admin_token(path, env=False)
    return None if token is None else SecretStr(token)


@gateway_app.command("run")
def gateway_run(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the gateway keeps its key and stores (default var/gateway); one "
            "gateway per directory, on one chain."
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="HTTP listen address (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="HTTP port (default 8700)."),
    ] = None,
    group_id: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=2**64 - 1,
            help="This gateway's trust group ID (default 1).",
        ),
    ] = None,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            help="Ethereum JSON-RPC URL (default: an in-process chain, new on every start)."
        ),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding the admin token (or set VITALCHAIN_GATEWAY_ADMIN_TOKEN); "
            "without one, enrolment by the admin is disabled."
        ),
    ] = None,
    mqtt: Annotated[
        bool | None,
        typer.Option(help="Start mosquitto and accept telemetry over MQTT too (default on)."),
    ] = None,
    mqtt_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="MQTT port (default: chosen once per data directory).",
        ),
    ] = None,
    ingest_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=64,
            help="Processes verifying telemetry beside the gateway's (default: one per core; "
            "0: none).",
        ),
    ] = None,
    telemetry_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Where the ingest workers serve POST /v1/telemetry, told to devices at "
            "association (default: chosen once per data directory).",
        ),
    ] = None,
    reset_data: Annotated[
        bool,
        typer.Option(
            "--reset-data",
            help="Start afresh: move the data directory's old data (not its key and "
            "deployment.json) aside to DATA_DIR/.old-<time>/, e.g. after the chain was reset.",
        ),
    ] = False,
    _old_flag: AdminTokenFlag = None,
) -> None:
    """Run the API Edge: onboarding and telemetry over HTTP (and MQTT), the store, alerts.

    Every setting is read from a VITALCHAIN_GATEWAY_<NAME> variable (--port from
    VITALCHAIN_GATEWAY_PORT, ...); an option given overrides its variable (docs/cli.md lists
    every setting).  With --rpc-url, the contracts named by
    DATA_DIR/deployment.json are used (`chain start` and `chain deploy` write it there by
    default); without that file they are deployed.  Exit 2 when the gateway cannot start
    (the line ends in a code such as chain_unavailable, port_in_use, data_dir_locked or
    chain_mismatch), 0 after Ctrl-C or SIGTERM.
    """
    from vitalchain.errors import VitalchainError
    from vitalchain.gateway.settings import GatewaySettings
    from vitalchain.node import serve

    if rpc_url is not None:
        rpc_url = parse_http_url(rpc_url, "--rpc-url")
    settings = build_settings(
        {
            "data_dir": data_dir,
            "host": host,
            "port": port,
            "group_id": group_id,
            "rpc_url": rpc_url,
            "admin_token": _token(admin_token_file),
            "mqtt": mqtt,
            "mqtt_port": mqtt_port,
            "ingest_workers": ingest_workers,
            "telemetry_port": telemetry_port,
        }
    )
    if settings.rpc_url is not None and rpc_url is None:
        parse_http_url(settings.rpc_url, f"{ENV_PREFIX}RPC_URL")
    default_dir = GatewaySettings.model_fields["data_dir"].default
    check_data_dir(
        settings.data_dir,
        "--data-dir" if data_dir is not None else f"{ENV_PREFIX}DATA_DIR",
        default=default_dir,
    )
    started = False

    def announce(running: RunningGateway, url: str) -> None:
        nonlocal started
        started = True
        _print_banner(settings, running, url)

    try:
        serve(settings, reset_data=reset_data, on_started=announce)
    except VitalchainError as exc:
        if started:
            fail(f"the gateway stopped: {exc.message}", 1, why=exc.code)
        fail(f"cannot start the gateway: {exc.message}", 2, why=exc.code)
    except OSError as exc:
        doing = "the gateway stopped" if started else "cannot start the gateway"
        fail(f"{doing}: {exc.strerror or exc}", 1 if started else 2, why="os_error")
    stdout().print("stopped the gateway")


def _print_banner(settings: GatewaySettings, running: RunningGateway, url: str) -> None:
    """What an operator needs to know at start: where, which group and chain, MQTT, enrolment."""
    gateway = running.gateway
    ledger = gateway.ledger
    if settings.rpc_url is None:
        chain = f"{ledger.chain_id}, embedded (run by this gateway: forgotten when it stops)"
    else:
        chain = f"{ledger.chain_id} at {settings.rpc_url}"
    if running.broker is not None:
        endpoint = running.broker.endpoint
        mqtt = f"{endpoint.host}:{endpoint.port}"
    elif settings.mqtt:
        mqtt = "off (mosquitto is not installed): telemetry over HTTP only"
    else:
        mqtt = "off (--no-mqtt): telemetry over HTTP only"
    if settings.admin_token is not None:
        enrolment = "enabled: admin token, or the patient's signature"
    else:
        enrolment = (
            f"by admin DISABLED (no {TOKEN_ENV} or --admin-token-file); patients can still "
            "enrol devices with their own signature"
        )
    store = "PostgreSQL" if settings.store_dsn else "SQLite"
    workers = running.workers
    if workers is None:
        ingest = "in the gateway's process (--ingest-workers 0)"
    else:
        ingest = f"{workers.count} worker processes; HTTP telemetry also at {workers.telemetry_url}"
    lines = [
        f"[green]gateway running at {url}[/green] (Ctrl-C stops it)",
        f"  group      {settings.group_id} (gateway {gateway.master.address})",
        f"  chain      {chain}",
        f"  MQTT       {mqtt}",
        f"  ingest     {ingest}",
        f"  enrolment  {enrolment}",
        f"  data       {settings.data_dir} (store: {store})",
    ]
    console = stdout()
    for line in lines:
        console.print(line)
    sys.stdout.flush()
