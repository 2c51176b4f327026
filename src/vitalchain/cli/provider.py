"""``vitalchain provider`` and ``vitalchain fhir``: register, fetch under consent, export.

Fetching asks the store for the patient's blocks with a signed, one-time challenge; the store
asks the chain about consent and releases ciphertext only.  Decryption happens here, with the
caller's key.  A patient may fetch their own blocks with their own key the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from vitalchain.cli._common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_GATEWAY,
    DEFAULT_RPC,
    DeploymentOpt,
    GatewayOpt,
    PatientOpt,
    RpcOpt,
    command_group,
    ensure_gas,
    err,
    fail,
    gateway_client,
    gateway_health,
    guard,
    new_file,
    open_chain,
    parse_address,
    read_key,
    stdout,
    write_private_text,
)

if TYPE_CHECKING:
    from vitalchain.ledger import Ledger
    from vitalchain.store.model import Reading
    from vitalchain.vitals import Vital

__all__ = ["fhir_app", "provider_app"]

provider_app = command_group(
    "Register providers; fetch and decrypt a patient's readings under consent."
)
fhir_app = command_group("Export decrypted readings as FHIR R4.")

ReaderKeyOpt = Annotated[
    Path, typer.Option("--key", help="Your key file (a consented provider, or the patient).")
]
GroupOpt = Annotated[
    int | None,
    typer.Option(
        min=1, max=2**64 - 1, help="Trust group holding the blocks (default: the gateway's own)."
    ),
]
AfterOpt = Annotated[
    int, typer.Option(min=0, max=2**63 - 1, help="Only blocks numbered after this one.")
]
BlockOpt = Annotated[int | None, typer.Option(min=1, max=2**63 - 1, help="Only this block number.")]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@provider_app.command("register")
def register(
    admin_key: Annotated[
        Path,
        typer.Option(help="The consent admin's key file (the deployer, see `chain deploy`)."),
    ],
    provider: Annotated[str, typer.Option(help="Address of the provider to register (0x…).")],
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
) -> None:
    """Register a provider on chain (consent admin only), so patients can grant it consent.

    The provider must also publish its own key (`vitalchain key publish`) so blocks can be
    wrapped for it.
    """
    admin = read_key(admin_key, "--admin-key")
    who = parse_address(provider, "--provider")
    ledger = open_chain(rpc_url, deployment)
    console = stdout()
    with guard("the provider was not registered"):
        if ledger.is_provider(who):
            console.print(f"{who} is already a registered provider")
            return
        ensure_gas(ledger, admin.address)
        tx = ledger.register_provider(admin, who)
        published = ledger.has_key(who)
    console.print(f"[green]registered[/green] provider {who} (block {tx.block_number})")
    if not published:
        console.print(
            "next, the provider publishes its key: vitalchain key publish --key <its key file>",
        )


@dataclass(frozen=True, slots=True)
class Row:
    block: int
    device: str
    reading: Reading

    def to_json(self) -> dict[str, Any]:
        info = self.reading.vital.info
        return {
            "block": self.block,
            "device": self.device,
            "seq": self.reading.seq,
            "vital": info.short,
            "value": self.reading.value,
            "unit": info.unit,
            "t_ms": self.reading.t_ms,
            "time": _time(self.reading.t_ms),
        }


def _time(t_ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=t_ms)).isoformat(timespec="milliseconds")


def fetch_rows(
    key_file: Path,
    patient_text: str,
    gateway: str,
    group_id: int | None,
    after: int = 0,
    block: int | None = None,
) -> tuple[str, int, list[Row]]:
    """Fetch under consent and decrypt: (patient, group, rows); exits 1 with the refusal."""
    from vitalchain.errors import VitalchainError
    from vitalchain.sdk.provider import AccessError, ProviderClient

    key = read_key(key_file)
    patient = parse_address(patient_text, "--patient")
    with gateway_client(gateway) as http:
        group = group_id or int(gateway_health(http)["group_id"])
        with guard(f"cannot fetch from {http.base_url}"):
            try:
                fetched = ProviderClient(key, http).fetch(
                    group, patient, after_number=after, number=block
                )
            except AccessError as exc:
                if exc.code == "unknown_block":
                    fail(
                        f"no sealed block for patient {patient} in group {group} (yet?)",
                        why="unknown_block",
                    )
                fail(f"access refused by the store: {exc.message}", why=exc.code)
    rows: list[Row] = []
    keyless: list[int] = []
    with Progress(
        TextColumn("decrypting blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task("decrypt", total=len(fetched))
        for item in fetched:
            number = item.block.number
            if item.stanza is None:
                keyless.append(number)
            else:
                try:
                    pairs = item.readings(key)
                except VitalchainError as exc:
                    fail(
                        f"block {number} does not open or verify: "
                        "run `vitalchain verify` to see what is wrong",
                        why=exc.code,
                    )
                rows.extend(Row(number, device, reading) for device, reading in pairs)
            bar.advance(task)
    if keyless:
        err().print(
            f"[yellow]note:[/yellow] {len(keyless)} block(s) hold no key for {key.address} "
            f"(sealed before the consent or before its key was published, or holding only "
            f"vitals outside the consent): "
            f"{', '.join(map(str, keyless[:10]))}{' …' if len(keyless) > 10 else ''}",
        )
    return patient, group, rows


@provider_app.command("fetch")
def fetch(
    key: ReaderKeyOpt,
    patient: PatientOpt,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    group_id: GroupOpt = None,
    after: AfterOpt = 0,
    block: BlockOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Fetch a patient's blocks under consent, decrypt them and print the readings.

    The store checks the consent on chain at every request; a revoked or expired consent is
    refused (exit 1).  Device signatures are checked; `vitalchain verify` checks the rest.
    """
    whose, group, rows = fetch_rows(key, patient, gateway, group_id, after, block)
    if as_json:
        typer.echo(
            json.dumps(
                {"patient": whose, "group_id": group, "readings": [r.to_json() for r in rows]},
                indent=2,
            )
        )
        return
    blocks = len({r.block for r in rows})
    table = Table(
        title=f"patient {whose}, group {group}: {len(rows)} readings in {blocks} block(s)"
    )
    for column in ("block", "time (UTC)", "vital", "value", "unit", "device", "seq"):
        table.add_column(column, no_wrap=True, justify="right" if column == "value" else "left")
    for row in rows:
        info = row.reading.vital.info
        table.add_row(
            str(row.block),
            _time(row.reading.t_ms)[:19].replace("T", " "),
            info.short,
            f"{row.reading.value:g}",
            info.symbol,
            row.device[:10] + "…",
            str(row.reading.seq),
        )
    stdout().print(table)


class BundleType(StrEnum):
    """``fhir export --bundle``: vitalchain.fhir.BUNDLE_TYPES (a test keeps them equal; the
    CLI does not import the exporter until it runs)."""

    collection = "collection"
    transaction = "transaction"


@fhir_app.command("export")
def export(
    key: ReaderKeyOpt,
    patient: PatientOpt,
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the Bundle JSON ('-' for stdout).")
    ],
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    group_id: GroupOpt = None,
    after: AfterOpt = 0,
    force: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    bundle_type: Annotated[
        BundleType,
        typer.Option(
            "--bundle",
            help="collection (a set handed over), or transaction (POST it to a FHIR server's"
            " base URL: each reading created once, even if posted again).",
        ),
    ] = BundleType.collection,
    with_ranges: Annotated[
        bool,
        typer.Option(
            "--ranges/--no-ranges",
            help="Read the patient's thresholds from the chain for each Observation's"
            " referenceRange and H/L/N interpretation (--no-ranges: neither, no chain needed).",
        ),
    ] = True,
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: Annotated[
        Path | None,
        typer.Option(
            "--deployment",
            help="deployment.json naming the contracts, for the thresholds (default:"
            f" {DEFAULT_DEPLOYMENT} if it exists, else the export goes without ranges).",
        ),
    ] = None,
) -> None:
    """Fetch and decrypt a patient's readings under consent and write a FHIR R4 Bundle.

    A Bundle of vital-signs Observations (LOINC codes, UCUM units); the patient appears only
    as its pseudonymous address.  With the patient's on-chain thresholds, each value carries
    them as its referenceRange and is flagged H, L or N; a vital without a threshold gets
    neither.
    """
    from vitalchain.fhir import bundle

    to_stdout = str(out) == "-"
    if not to_stdout:  # checked before anything is fetched; nothing is written on a refusal
        new_file(out, "--out", overwrite=force)
    ledger, no_ranges = _threshold_chain(with_ranges, rpc_url, deployment)  # before the fetch
    whose, _, rows = fetch_rows(key, patient, gateway, group_id, after)
    ranges = None if ledger is None else _thresholds(ledger, whose, {r.reading.vital for r in rows})
    try:
        document = bundle(
            whose, [(r.device, r.reading) for r in rows], kind=bundle_type.value, ranges=ranges
        )
    except ValueError as exc:
        fail(f"cannot express these readings in FHIR: {exc}", why="fhir_error")
    text = json.dumps(document, indent=2) + "\n"
    if to_stdout:
        typer.echo(text, nl=False)
        if no_ranges:
            err().print(no_ranges)
        return
    try:  # health data: 0600, and whole or not at all
        write_private_text(out, text)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}", why="not_writable")
    err().print(
        f"wrote a FHIR R4 Bundle of {len(document['entry'])} Observation(s) "
        f"({len(rows)} readings) to {out}",
    )
    if no_ranges:
        err().print(no_ranges)


def _threshold_chain(
    wanted: bool, rpc_url: str, deployment: Path | None
) -> tuple[Ledger | None, str | None]:
    """The chain to read thresholds from, or None and the note to print after the export.

    Only the default deployment may be missing (a provider's machine need not run a chain):
    the export then goes without ranges and says so once it is written.  A named one must work.
    """
    if not wanted:
        return None, None
    if deployment is None:
        if not DEFAULT_DEPLOYMENT.exists():
            return None, (
                f"[yellow]note:[/yellow] no {DEFAULT_DEPLOYMENT}: exported without reference"
                " ranges (pass --deployment and --rpc-url for the patient's thresholds)"
            )
        deployment = DEFAULT_DEPLOYMENT
    return open_chain(rpc_url, deployment), None


def _thresholds(
    ledger: Ledger, patient: str, vitals: set[Vital]
) -> dict[Vital, tuple[float, float]]:
    with guard("cannot read the patient's thresholds (--no-ranges exports without them)"):
        return ledger.thresholds(patient, vitals)
