"""The ``vitalchain`` command line (Typer).  Each command is a thin call into a service."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="vitalchain: blockchain-secured remote patient monitoring.",
    no_args_is_help=True,
    add_completion=False,
)
gateway_app = typer.Typer(help="Run and operate an edge gateway.", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """vitalchain: signed, encrypted vitals; trust groups, consent and anchors on Ethereum."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@app.command()
def demo() -> None:
    """Walk through vitalchain's cryptography: sign, encrypt, ring-sign, prove inclusion."""
    from vitalchain.walkthrough import run

    run()


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
    """Run the API Edge: onboarding and telemetry over HTTP (and MQTT)."""
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


@app.command()
def simulate(
    gateway: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8700",
    admin_token: Annotated[
        str, typer.Option(envvar="VITALCHAIN_GATEWAY_ADMIN_TOKEN", help="Gateway admin token.")
    ] = "",
    patients: Annotated[int, typer.Option(min=1, max=1000, help="Simulated patients.")] = 2,
    minutes: Annotated[
        float, typer.Option(min=0.1, help="Patient time to simulate, in minutes.")
    ] = 60.0,
    speedup: Annotated[
        float, typer.Option(min=1.0, help="Simulated seconds per real second.")
    ] = 600.0,
    transport: Annotated[str, typer.Option(help="http or mqtt.")] = "http",
    seed: Annotated[int | None, typer.Option(help="Random seed for reproducible vitals.")] = None,
) -> None:
    """Simulate wearables: enrol, onboard, and stream realistic vitals with abnormal episodes."""
    import httpx
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from vitalchain.device.client import DeviceError
    from vitalchain.device.simulator import Simulation

    if transport not in ("http", "mqtt"):
        raise typer.BadParameter("transport is http or mqtt", param_hint="--transport")
    if not admin_token:
        raise typer.BadParameter(
            "an admin token is needed to enrol devices", param_hint="--admin-token"
        )
    console = Console()
    with httpx.Client(base_url=gateway, timeout=30) as http:
        sim = Simulation(http, admin_token, patients=patients, seed=seed, speedup=speedup)
        try:
            sim.onboard()
        except (DeviceError, httpx.HTTPError) as exc:
            console.print(f"[red]onboarding failed: {exc}")
            raise typer.Exit(1) from None
        publishers = {}
        if transport == "mqtt":
            from vitalchain.device.mqtt import MqttPublisher

            for device in sim.devices:
                creds = device.client.session.mqtt if device.client.session else None
                if creds is None:
                    console.print("[red]the gateway offers no MQTT; use --transport http")
                    raise typer.Exit(1)
                publishers[device.client.address] = MqttPublisher(creds)
                publishers[device.client.address].connect()
        with Progress(console=console) as bar:
            task = bar.add_task(f"{len(sim.devices)} devices streaming", total=1.0)
            stats = sim.run(
                minutes * 60,
                publish=(lambda d, m: publishers[d.client.address].publish(m))
                if publishers
                else None,
                progress=lambda f: bar.update(task, completed=f),
            )
        for publisher in publishers.values():
            publisher.close()
    table = Table("messages", "readings accepted", "refused", "patient time", "wall time")
    table.add_row(
        str(stats.sent_messages),
        str(stats.accepted_readings),
        ", ".join(f"{k}: {v}" for k, v in stats.refused.items()) or "0",
        f"{stats.simulated_s / 60:.0f} min",
        f"{stats.wall_s:.1f} s",
    )
    console.print(table)


@app.command()
def verify(
    patient: Annotated[str, typer.Option(help="The patient's address (0x…).")],
    group_id: Annotated[
        int, typer.Option(min=1, help="The trust group whose log holds the blocks.")
    ],
    key_file: Annotated[
        Path, typer.Option("--key", help="File with your hex private key (patient or provider).")
    ],
    store: Annotated[str, typer.Option(help="Store (gateway) base URL.")] = "http://127.0.0.1:8700",
    rpc_url: Annotated[
        str, typer.Option(help="Ethereum JSON-RPC URL of the chain.")
    ] = "http://127.0.0.1:8545",
    deployment: Annotated[Path, typer.Option(help="deployment.json naming the contracts.")] = Path(
        "var/gateway/deployment.json"
    ),
    block: Annotated[int | None, typer.Option(min=1, help="Verify only this block number.")] = None,
) -> None:
    """Verify a patient's blocks against the chain: signatures, inclusion, consistency, gaps.

    Exit codes: 0 verified; 1 a check failed (named in the output); 2 bad arguments;
    3 could not verify (access refused, store or chain unreachable).
    """
    import httpx

    from vitalchain.care.cli_verify import EXIT_UNABLE, run_verify
    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.errors import VitalchainError
    from vitalchain.ledger import Deployment, Ledger, RpcBackend

    try:
        key = PrivateKey(bytes.fromhex(key_file.read_text().strip().removeprefix("0x")))
    except (OSError, ValueError, VitalchainError) as exc:
        raise typer.BadParameter(f"cannot read a private key: {exc}", param_hint="--key") from None
    if not patient.startswith("0x") or len(patient) != 42:
        raise typer.BadParameter(
            "a patient is a 0x-prefixed 20-byte address", param_hint="--patient"
        )
    try:
        ledger = Ledger(RpcBackend(rpc_url), Deployment.load(deployment))
    except (OSError, VitalchainError) as exc:
        typer.echo(f"cannot reach the chain or read the deployment: {exc}", err=True)
        raise typer.Exit(EXIT_UNABLE) from None
    from vitalchain.crypto.keys import to_checksum_address

    with httpx.Client(base_url=store, timeout=30) as http:
        _, code = run_verify(
            ledger,
            http,
            key,
            group_id,
            to_checksum_address(bytes.fromhex(patient[2:])),
            number=block,
        )
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
