"""What every command shares: argument parsing that refuses clearly, and one way to fail.

Exit codes, for every command but ``verify`` (which keeps its own, see ``care/cli_verify.py``):
0 done; 1 the operation failed or was refused (the message says why: a contract's refusal,
an unreachable gateway or node, no consent); 2 bad arguments (Typer's usage error).

Private keys are read from files and never printed, logged or put in an error message.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from vitalchain.crypto import keys
from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import VitalchainError
from vitalchain.vitals import ALL_VITALS_SCOPE, Vital

if TYPE_CHECKING:
    import httpx

    from vitalchain.ledger import Ledger

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "DEFAULT_GATEWAY",
    "DEFAULT_RPC",
    "VITAL_NAMES",
    "DeploymentOpt",
    "GatewayOpt",
    "RpcOpt",
    "ensure_gas",
    "err",
    "fail",
    "gateway_client",
    "gateway_health",
    "guard",
    "open_chain",
    "parse_address",
    "parse_http_url",
    "parse_scope",
    "parse_vital",
    "read_key",
    "read_secret_json",
    "scope_names",
    "stdout",
    "write_secret_json",
]

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_GATEWAY = "http://127.0.0.1:8700"
DEFAULT_DEPLOYMENT = Path("var/gateway/deployment.json")

RpcOpt = Annotated[
    str, typer.Option("--rpc-url", help="Ethereum JSON-RPC URL of the chain.", show_default=True)
]
DeploymentOpt = Annotated[
    Path,
    typer.Option(
        "--deployment",
        help="deployment.json naming the contracts (written by `chain start` / `chain deploy`).",
    ),
]
GatewayOpt = Annotated[
    str, typer.Option("--gateway", help="Gateway (and store) base URL.", show_default=True)
]

# Short names people type, on top of Vital.parse's (systolic, heart_rate, spo2, ...).
_VITAL_ALIASES: dict[str, tuple[Vital, ...]] = {
    "hr": (Vital.HEART_RATE,),
    "pulse": (Vital.HEART_RATE,),
    "sys": (Vital.SYSTOLIC_BP,),
    "dia": (Vital.DIASTOLIC_BP,),
    "bp": (Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP),
    "temp": (Vital.BODY_TEMPERATURE,),
    "o2": (Vital.SPO2,),
}
VITAL_NAMES = ", ".join([v.info.short for v in Vital] + sorted(_VITAL_ALIASES) + ["all"])


def stdout() -> Console:
    """Results go to stdout; a line is never hard-wrapped (addresses stay whole in a pipe)."""
    return Console(soft_wrap=True, highlight=False)


def err() -> Console:
    """Progress, notes and errors go to stderr, so ``--json`` output stays clean."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Report a failed operation in one line (no traceback) and exit non-zero."""
    from rich.markup import escape

    err().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@contextlib.contextmanager
def guard(doing: str) -> Iterator[None]:
    """Turn the failures a service may raise into one clear line and exit code 1.

    Catches vitalchain's own errors (contract refusals, gateway refusals, decode errors),
    network failures (httpx, requests/web3 connection errors are OSErrors) and web3's errors.
    Bugs still raise with a traceback.
    """
    import httpx
    from web3.exceptions import Web3Exception

    try:
        yield
    except VitalchainError as exc:
        code = f" ({exc.code})" if exc.code else ""
        fail(f"{doing}: {exc.message or type(exc).__name__}{code}")
    except json.JSONDecodeError:
        fail(f"{doing}: the answer is not JSON (is the URL a vitalchain gateway?)")
    except httpx.HTTPError as exc:
        fail(f"{doing}: {_network(exc)}")
    except OSError as exc:
        fail(f"{doing}: {_network(exc)}")
    except Web3Exception as exc:
        fail(f"{doing}: the node answered unexpectedly ({type(exc).__name__})")


def _network(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if len(text) > 200:
        text = text[:200] + "…"
    return f"cannot reach the service ({text})"


# -- parsing -----------------------------------------------------------------------------------


def read_key(path: Path, hint: str = "--key") -> PrivateKey:
    """A hex private key (optionally 0x-prefixed) from a file; nothing of it in any error."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read a private key from {path}: {exc.strerror or type(exc).__name__}",
            param_hint=hint,
        ) from None
    except UnicodeDecodeError:
        text = ""
    try:
        return PrivateKey(bytes.fromhex(text.removeprefix("0x")))
    except (ValueError, VitalchainError):
        raise typer.BadParameter(
            f"{path} does not hold a private key (64 hex digits)", param_hint=hint
        ) from None


def parse_address(text: str, hint: str) -> str:
    """A 0x-prefixed 20-byte address in EIP-55 form; a mixed-case typo is refused."""
    try:
        return keys.parse_address(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: {exc}", param_hint=hint) from None


def parse_vital(name: str, hint: str) -> tuple[Vital, ...]:
    key = name.strip().lower().replace("-", "_")
    if key in _VITAL_ALIASES:
        return _VITAL_ALIASES[key]
    try:
        return (Vital.parse(key),)
    except ValueError:
        raise typer.BadParameter(
            f"unknown vital {name.strip()!r}; choose from {VITAL_NAMES}", param_hint=hint
        ) from None


def parse_scope(text: str, hint: str = "--vitals") -> int:
    """A comma-separated list of vitals (or ``all``) as a consent scope bitmask."""
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    if not names:
        raise typer.BadParameter(f"name at least one vital: {VITAL_NAMES}", param_hint=hint)
    scope = 0
    for name in names:
        if name.lower() == "all":
            scope |= ALL_VITALS_SCOPE
            continue
        for vital in parse_vital(name, hint):
            scope |= vital.bit
    return scope


def scope_names(scope: int) -> str:
    return ", ".join(v.info.short for v in Vital if scope & v.bit) or "none"


def parse_http_url(url: str, hint: str) -> str:
    """An http(s) URL with a host; the trailing slash dropped."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise typer.BadParameter(
            f"{url!r} is not an http(s) URL such as http://127.0.0.1:8700", param_hint=hint
        )
    return url.rstrip("/")


# -- services ----------------------------------------------------------------------------------


def open_chain(rpc_url: str, deployment: Path) -> Ledger:
    """The ledger at ``rpc_url`` with the contracts ``deployment`` names (funded on anvil)."""
    from vitalchain.ledger import Deployment, Ledger, LedgerError
    from vitalchain.node import rpc_backend

    rpc_url = parse_http_url(rpc_url, "--rpc-url")
    try:
        text = deployment.read_text()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {deployment} ({exc.strerror or type(exc).__name__}); "
            "`vitalchain chain deploy` writes it",
            param_hint="--deployment",
        ) from None
    try:
        plan = Deployment.from_json(text)
    except (LedgerError, ValueError, KeyError, TypeError):
        raise typer.BadParameter(
            f"{deployment} is not a vitalchain deployment file", param_hint="--deployment"
        ) from None
    with guard(f"cannot use the chain at {rpc_url}"):
        ledger = Ledger(rpc_backend(rpc_url), plan)
        if not ledger.w3.eth.get_code(ledger.address_of("TrustGroups")):  # type: ignore[arg-type]
            fail(
                f"no vitalchain contracts on the chain at {rpc_url} where {deployment} says "
                "(a restarted dev node forgets them: deploy again)"
            )
    return ledger


def ensure_gas(ledger: Ledger, address: str) -> None:
    """On a dev chain (a funder is known), give an account with no ether some for gas."""
    from web3 import Web3

    if ledger.backend.funder is None:
        return
    if ledger.w3.eth.get_balance(Web3.to_checksum_address(address)) == 0:
        ledger.fund(address)


def gateway_client(url: str, hint: str = "--gateway", timeout: float = 30) -> httpx.Client:
    import httpx

    return httpx.Client(base_url=parse_http_url(url, hint), timeout=timeout)


def gateway_health(http: httpx.Client) -> dict[str, Any]:
    """The gateway's ``/v1/health`` (its group, its chain); fails clearly if unreachable."""
    with guard(f"cannot reach the gateway at {http.base_url}"):
        response = http.get("/v1/health")
        body = response.json() if response.status_code == 200 else None
    if not isinstance(body, dict) or not isinstance(body.get("group_id"), int):
        fail(f"{http.base_url} does not answer like a vitalchain gateway (/v1/health)")
    return body


# -- files holding secrets -----------------------------------------------------------------------


def write_secret_json(path: Path, data: dict[str, Any], *, replace: bool = False) -> None:
    """JSON readable by its owner only (0600); a new file is never clobbered unless replacing."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 already
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_secret_json(path: Path, hint: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}", param_hint=hint
        ) from None
    except ValueError:
        raise typer.BadParameter(f"{path} is not JSON", param_hint=hint) from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} is not a vitalchain file", param_hint=hint)
    return data
