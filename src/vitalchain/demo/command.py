"""``vitalchain demo``: the Typer command; the scenario lives in :mod:`vitalchain.demo.scenario`."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from vitalchain.demo.config import DemoConfig


def demo(
    gateways: Annotated[
        int, typer.Option(min=1, max=8, help="Gateways (clusters), each its own trust group.")
    ] = DemoConfig.gateways,
    providers: Annotated[
        int, typer.Option(min=2, max=50, help="Providers (one has its consent revoked).")
    ] = DemoConfig.providers,
    patients: Annotated[
        int, typer.Option(min=2, max=500, help="Patients, each with a BP cuff and an oximeter.")
    ] = DemoConfig.patients,
    minutes: Annotated[
        float, typer.Option(min=0.5, max=1440, help="Patient time to simulate, in minutes.")
    ] = DemoConfig.patient_minutes,
    speedup: Annotated[
        float, typer.Option(min=1.0, help="Simulated seconds per real second (at most).")
    ] = DemoConfig.speedup,
    episodes_per_hour: Annotated[
        float, typer.Option(min=0.0, help="Abnormal episodes per patient-hour.")
    ] = DemoConfig.episodes_per_hour,
    seed: Annotated[
        int, typer.Option(help="Random seed for the simulated physiology.")
    ] = DemoConfig.seed,
    rpc_url: Annotated[
        str | None,
        typer.Option(help="Run against this Ethereum JSON-RPC node instead of the embedded chain."),
    ] = DemoConfig.rpc_url,
    mqtt: Annotated[
        bool, typer.Option(help="Let the first gateway's devices publish over MQTT (mosquitto).")
    ] = DemoConfig.mqtt,
    out: Annotated[
        Path, typer.Option(help="Folder for the run's report (a timestamped subfolder).")
    ] = Path("runs"),
    print_json: Annotated[
        bool, typer.Option("--json", help="Also print the JSON summary on stdout.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="At the end, keep the demo's world running with a care portal for one "
            "provider and one patient (login links printed) until Ctrl-C.",
        ),
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the run's chain deployment and gateway data (journal, block store, "
            "state, broker files) in this new or empty folder, for inspection; by default "
            "they go to a temporary folder that is deleted."
        ),
    ] = None,
) -> None:
    """Run the whole system end to end and write a report (Markdown, JSON, PNG plots).

    Two gateways share one chain; patients' devices onboard and stream vitals with abnormal
    episodes; providers receive ring-signed alerts over WebSocket; a patient revokes a consent;
    a provider fetches, decrypts and verifies; a tampered block is caught.  Exit code 0 when
    every check holds, 1 when one fails, 2 for bad arguments.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vitalchain.demo.portals import DemoWorld, running_portals, take_screenshots
    from vitalchain.demo.report import checks, print_summary, write_report
    from vitalchain.demo.scenario import DemoRun, run_demo

    config = DemoConfig(
        gateways=gateways,
        providers=providers,
        patients=patients,
        patient_minutes=minutes,
        speedup=speedup,
        episodes_per_hour=episodes_per_hour,
        seed=seed,
        rpc_url=rpc_url,
        mqtt=mqtt,
    )
    try:
        config.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if rpc_url is not None:
        _check_rpc(rpc_url)
    if data_dir is not None:
        _check_data_dir(data_dir)
    console = Console(stderr=print_json)
    folder = out / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if folder.exists():
        folder = folder.with_name(folder.name + "-" + str(len(list(out.iterdir()))))
    with (
        _work_dir(data_dir) as work,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
        ) as bar,
    ):
        task = bar.add_task("setting up", total=1.0)
        shown: list[str] = []

        def hold(run: DemoRun, world: DemoWorld) -> None:
            """The portals on the world as it ends: their screenshots, and with --serve the
            portals themselves until Ctrl-C (or SIGTERM)."""
            bar.update(task, description="the care portal: screenshots")
            with running_portals(world) as urls:
                shots = take_screenshots(urls, folder / "screenshots", run.notes.append)
                shown.append(
                    f"portal: {len(shots)} screenshots of a provider's and a patient's portal "
                    f"(served at {urls.provider.split('/?')[0]} and "
                    f"{urls.patient.split('/?')[0]} during the run)"
                )
                if serve:
                    bar.update(task, description="serving the care portal (Ctrl-C stops)")
                    bar.console.print(
                        "The demo's world is running. Open, on this machine:\n"
                        f"  provider: {urls.provider}\n  patient:  {urls.patient}\n"
                        "Ctrl-C stops it.",
                        soft_wrap=True,
                    )
                    _wait_for_interrupt()

        run = run_demo(
            config,
            Path(work),
            step=lambda text: bar.update(task, description=text),
            progress=lambda fraction: bar.update(task, completed=fraction),
            hold=hold,
        )
        bar.update(task, description="done", completed=1.0)
    written = write_report(run, folder)
    print_summary(run, console)
    console.print(f"report: {folder}/ ({', '.join(p.name for p in written)})")
    if data_dir is not None:
        console.print(f"data: {data_dir}/ (deployment.json, one folder per gateway)")
    for line in shown:
        console.print(line)
    if not serve:
        console.print(
            "to browse this world in the care portal: vitalchain demo --serve "
            "(keeps it running until Ctrl-C; docs/portal.md)"
        )
    if print_json:
        typer.echo(json.dumps(run.summary()))
    if not all(checks(run).values()):
        raise typer.Exit(1)


def _wait_for_interrupt() -> None:
    """Until Ctrl-C or SIGTERM; either returns normally, so everything stops in order."""
    import signal
    import threading

    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_data_dir(path: Path) -> None:
    """A kept data folder must be new or empty: a gateway's data belongs to one chain, and
    the demo deploys a fresh one on every run."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise typer.BadParameter(
            f"{path} exists and is not an empty folder", param_hint="--data-dir"
        )
    if not path.parent.is_dir():
        raise typer.BadParameter(f"{path.parent} is not a folder", param_hint="--data-dir")


@contextlib.contextmanager
def _work_dir(keep: Path | None) -> Iterator[str]:
    """``keep`` (created 0700), or a temporary folder removed afterwards."""
    if keep is not None:
        from vitalchain.store.files import private_dir

        yield str(private_dir(keep))
        return
    with tempfile.TemporaryDirectory(prefix="vitalchain-demo-") as work:
        yield work


def _check_rpc(url: str) -> None:
    """Refuse a URL that is not a reachable JSON-RPC node before anything starts."""
    import httpx

    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter("an http(s):// JSON-RPC URL", param_hint="--rpc-url")
    try:
        response = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=5
        )
        response.raise_for_status()
        int(response.json()["result"], 16)
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        raise typer.BadParameter(
            f"no Ethereum JSON-RPC node answers at {url} ({type(exc).__name__})",
            param_hint="--rpc-url",
        ) from None
