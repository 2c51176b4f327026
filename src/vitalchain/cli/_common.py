"""What every command shares: argument parsing that refuses clearly, and one way to fail.

Exit codes, for every command but ``verify`` (which keeps its own, see ``cli/verify_report.py``):
0 done; 1 the operation failed or was refused (the message says why: a contract's refusal,
an unreachable gateway or node, no consent); 2 bad arguments (Typer's usage error).

Private keys are read from files and never printed, logged or put in an error message.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer._click import exceptions as click  # Typer vendors its own click
from typer.core import TyperGroup

from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import VitalchainError
from vitalchain.store.files import write_private
from vitalchain.vitals import ALL_VITALS_SCOPE, Vital
from vitalchain.wire import address

if TYPE_CHECKING:
    import httpx

    from vitalchain.ledger import Deployment, Ledger

__all__ = [
    "ADMIN_TOKEN_ENV",
    "DEFAULT_DEPLOYMENT",
    "DEFAULT_GATEWAY",
    "DEFAULT_RPC",
    "VITAL_NAMES",
    "AdminTokenFileOpt",
    "AdminTokenFlag",
    "BadArgument",
    "CliGroup",
    "DeploymentOpt",
    "GatewayOpt",
    "PatientOpt",
    "RpcOpt",
    "admin_token",
    "check_data_dir",
    "command_group",
    "ensure_gas",
    "err",
    "fail",
    "gateway_client",
    "gateway_health",
    "guard",
    "new_file",
    "open_chain",
    "os_refusal",
    "parse_address",
    "parse_http_url",
    "parse_scope",
    "parse_vital",
    "read_deployment",
    "read_key",
    "read_secret_json",
    "read_secret_text",
    "reject_admin_token_flag",
    "scope_names",
    "stdout",
    "write_private_text",
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
PatientOpt = Annotated[str, typer.Option("--patient", help="The patient's address (0x…).")]

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


def command_group(help: str) -> typer.Typer:
    """A command group (``vitalchain chain``, ``vitalchain alerts`` ...) as every one is made:
    its help without arguments, markdown in its docstrings."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode="markdown")


def stdout() -> Console:
    """Results go to stdout; a line is never hard-wrapped (addresses stay whole in a pipe)."""
    return Console(soft_wrap=True, highlight=False)


def err() -> Console:
    """Progress, notes and errors go to stderr, so ``--json`` output stays clean."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1, *, why: str | None = None) -> NoReturn:
    """Report a failed operation in one line (no traceback) and exit non-zero (``code``);
    ``why`` is the machine-readable code, printed in parentheses at the end."""
    from rich.markup import escape

    suffix = f" ({why})" if why else ""
    err().print(f"[red]error:[/red] {escape(message)}{suffix}")
    raise typer.Exit(code)


class BadArgument(typer.BadParameter):
    """A refused argument (exit 2) with a machine-readable ``code`` in its one error line."""

    def __init__(self, message: str, hint: str | None = None, code: str = "invalid_argument"):
        super().__init__(message, param_hint=hint)
        self.code = code


def os_refusal(exc: OSError, doing: str, hint: str, code: str = "unreadable_file") -> BadArgument:
    """The refusal of a file the system would not read or create: what was being done, then
    the system's reason (its strerror, else the error's type), so every such line reads alike."""
    return BadArgument(f"{doing}: {exc.strerror or type(exc).__name__}", hint, code=code)


def _usage_code(exc: click.ClickException) -> str:
    """The machine-readable code of a usage error: ours, or one per kind of click error."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    if isinstance(exc, click.MissingParameter):
        return "missing_argument"
    if isinstance(exc, click.NoSuchOption):
        return "unknown_option"
    if isinstance(exc, click.BadParameter):
        return "invalid_argument"
    if isinstance(exc, click.UsageError):
        return "usage_error"
    return "error"


class CliGroup(TyperGroup):
    """The root command: every usage error (exit 2) is one line on stderr ending in a code,
    e.g. ``error: Invalid value for --port: 'abc' is not a valid integer. (invalid_argument)``,
    instead of click's usage text and a boxed panel, so scripts and people read the same."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.NoArgsIsHelpError:
            # a group without its command: the help, as before (typer prints it)
            return super().main(args, prog_name, complete_var, True, **extra)
        except click.ClickException as exc:
            from rich.markup import escape

            message = " ".join(exc.format_message().split())
            err().print(f"[red]error:[/red] {escape(message)} ({_usage_code(exc)})")
            sys.exit(exc.exit_code)
        except typer.Abort:
            err().print("[red]error:[/red] aborted (aborted)")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


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
        fail(f"{doing}: {exc.message or type(exc).__name__}", why=exc.code or None)
    except json.JSONDecodeError:
        fail(f"{doing}: the answer is not JSON (is the URL a vitalchain gateway?)", why="not_json")
    except httpx.HTTPError as exc:
        fail(f"{doing}: {_network(exc)}", why="unreachable")
    except OSError as exc:
        fail(f"{doing}: {_network(exc)}", why="unreachable")
    except Web3Exception as exc:
        fail(f"{doing}: the node answered unexpectedly ({type(exc).__name__})", why="chain_error")


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
        raise os_refusal(exc, f"cannot read a private key from {path}", hint) from None
    except UnicodeDecodeError:
        text = ""
    try:
        return PrivateKey(bytes.fromhex(text.removeprefix("0x")))
    except (ValueError, VitalchainError):
        raise BadArgument(
            f"{path} does not hold a private key (64 hex digits)", hint, code="not_a_key"
        ) from None


def parse_address(text: str, hint: str) -> str:
    """A 0x-prefixed 20-byte address in EIP-55 form; a mixed-case typo is refused."""
    try:
        return address.parse_address(text)
    except ValueError as exc:
        code = "bad_checksum" if "checksum" in str(exc) else "invalid_address"
        raise BadArgument(f"{text!r}: {exc}", hint, code=code) from None


def parse_vital(name: str, hint: str) -> tuple[Vital, ...]:
    key = name.strip().lower().replace("-", "_")
    if key in _VITAL_ALIASES:
        return _VITAL_ALIASES[key]
    try:
        return (Vital.parse(key),)
    except ValueError:
        raise BadArgument(
            f"unknown vital {name.strip()!r}; choose from {VITAL_NAMES}", hint, code="unknown_vital"
        ) from None


def parse_scope(text: str, hint: str = "--vitals") -> int:
    """A comma-separated list of vitals (or ``all``) as a consent scope bitmask."""
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    if not names:
        raise BadArgument(f"name at least one vital: {VITAL_NAMES}", hint, code="no_vitals")
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
        raise BadArgument(
            f"{url!r} is not an http(s) URL such as http://127.0.0.1:8700", hint, code="invalid_url"
        )
    return url.rstrip("/")


# -- services ----------------------------------------------------------------------------------


def read_deployment(deployment: Path) -> Deployment:
    """The contracts a ``--deployment`` file names; a missing or malformed file is a bad
    argument (exit 2)."""
    from vitalchain.ledger import Deployment, LedgerError

    try:
        text = deployment.read_text()
    except OSError as exc:
        raise BadArgument(
            f"cannot read {deployment} ({exc.strerror or type(exc).__name__}); "
            "`vitalchain chain deploy` writes it",
            "--deployment",
            code="unreadable_file",
        ) from None
    try:
        return Deployment.from_json(text)
    except (LedgerError, ValueError, KeyError, TypeError):
        raise BadArgument(
            f"{deployment} is not a vitalchain deployment file",
            "--deployment",
            code="bad_deployment",
        ) from None


def open_chain(rpc_url: str, deployment: Path) -> Ledger:
    """The ledger at ``rpc_url`` with the contracts ``deployment`` names (funded on anvil)."""
    from vitalchain.ledger import Ledger
    from vitalchain.node import rpc_backend

    rpc_url = parse_http_url(rpc_url, "--rpc-url")
    plan = read_deployment(deployment)
    with guard(f"cannot use the chain at {rpc_url}"):
        ledger = Ledger(rpc_backend(rpc_url), plan)
        if not ledger.w3.eth.get_code(ledger.address_of("TrustGroups")):  # type: ignore[arg-type]
            fail(
                f"no vitalchain contracts on the chain at {rpc_url} where {deployment} says "
                "(a restarted dev node forgets them: deploy again)",
                why="deployment_not_on_chain",
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
        fail(
            f"{http.base_url} does not answer like a vitalchain gateway (/v1/health)",
            why="not_a_gateway",
        )
    return body


# -- paths ----------------------------------------------------------------------------------------
#
# A path a command creates must be meant: a folder that does not exist is a typo more often
# than a wish, so it is refused (``parent_missing``), except for a command's documented
# default path (var/..., whose folders are created).  Each check runs before anything is
# contacted or written.


def new_file(
    path: Path,
    hint: str,
    *,
    default: Path | None = None,
    overwrite: bool = False,
    exists: str = "pass --force to replace it",
) -> Path:
    """``path`` as a file about to be written: not a directory, not existing unless
    ``overwrite`` (else refused with ``exists`` as the advice), in a folder that exists and
    is writable (the folders of ``default`` are created when ``path`` is the default)."""
    if path.is_dir():
        raise BadArgument(f"{path} is a directory, not a file", hint, code="is_a_directory")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise BadArgument(f"{path} exists; {exists}", hint, code="file_exists")
    _parent_ready(path, hint, default)
    return path


def check_data_dir(path: Path, hint: str, *, default: Path | None = None) -> Path:
    """``path`` as a directory the command keeps data in: a directory if it exists (and
    writable), else creatable: its parent exists (the default's parents are created)."""
    if path.exists():
        if not path.is_dir():
            raise BadArgument(f"{path} is not a directory", hint, code="not_a_directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise BadArgument(f"cannot write in {path}", hint, code="not_writable")
        return path
    _parent_ready(path, hint, default)
    return path


def _parent_ready(path: Path, hint: str, default: Path | None) -> None:
    parent = path.parent
    if not parent.exists():
        if default is None or path != default:
            raise BadArgument(
                f"the folder {parent} does not exist (create it first)",
                hint,
                code="parent_missing",
            )
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BadArgument(
                f"cannot create {parent}: {exc.strerror or exc}", hint, code="not_writable"
            ) from None
    elif not parent.is_dir():
        raise BadArgument(f"{parent} is not a folder", hint, code="parent_not_a_directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadArgument(f"cannot write in {parent}", hint, code="not_writable")


def read_secret_text(path: Path, hint: str) -> str:
    """A secret (a token) from a file, stripped; never echoed in an error."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise BadArgument(
            f"cannot read {path}: {why or type(exc).__name__}", hint, code="unreadable_file"
        ) from None


# -- the admin token: never on the command line ---------------------------------------------

ADMIN_TOKEN_ENV = "VITALCHAIN_GATEWAY_ADMIN_TOKEN"  # noqa: S105 - a variable name


def reject_admin_token_flag(value: str | None) -> None:
    """The old ``--admin-token`` flag: refused with the way to give the token instead."""
    if value is not None:
        raise BadArgument(
            "the admin token is not taken on the command line (every local user can read it "
            f"in the process list): set {ADMIN_TOKEN_ENV} or use --admin-token-file FILE",
            "--admin-token",
            code="admin_token_on_command_line",
        )


AdminTokenFlag = Annotated[
    str | None,
    typer.Option(
        "--admin-token", hidden=True, callback=reject_admin_token_flag, expose_value=False
    ),
]
AdminTokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--admin-token-file",
        help=f"A file holding the gateway's admin token (or set {ADMIN_TOKEN_ENV}).",
    ),
]


def admin_token(path: Path | None, *, env: bool = True) -> str | None:
    """The admin token from ``--admin-token-file``, else (``env``) from the environment."""
    if path is not None:
        token = read_secret_text(path, "--admin-token-file")
        if not token:
            raise BadArgument(f"{path} is empty", "--admin-token-file", code="empty_admin_token")
        return token
    return (os.environ.get(ADMIN_TOKEN_ENV) or None) if env else None


# -- files holding secrets -----------------------------------------------------------------------


def write_secret_json(path: Path, data: dict[str, Any], *, replace: bool = False) -> None:
    """JSON readable by its owner only (0600); a new file is never clobbered unless replacing."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return
    write_private(path, text.encode())


def write_private_text(path: Path, text: str) -> None:
    """``text`` to ``path``, readable by its owner only (0600), replaced atomically."""
    write_private(path, text.encode())


def read_secret_json(path: Path, hint: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise os_refusal(exc, f"cannot read {path}", hint) from None
    except ValueError:
        raise BadArgument(f"{path} is not JSON", hint, code="not_json") from None
    if not isinstance(data, dict):
        raise BadArgument(f"{path} is not a vitalchain file", hint, code="wrong_file")
    return data
