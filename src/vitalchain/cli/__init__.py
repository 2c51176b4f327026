"""The ``vitalchain`` command line (Typer + Rich).  Each command is a thin call into a service.

One sub-app per concern (``chain``, ``gateway``, ``device``, ``key``, ``consent``,
``provider``, ``fhir``, ``alerts``) in its own module; ``verify``, ``walkthrough`` and
``demo`` sit at the top.  Exit codes: 0 done, 1 the operation failed or was refused (one
line says why), 2 bad arguments; ``verify`` keeps its own (0/1/2/3).  The command reference
is docs/cli.md.  Nothing in vitalchain imports this package.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vitalchain.cli._common import CliGroup
from vitalchain.cli.alerts import alerts_app
from vitalchain.cli.chain import chain_app
from vitalchain.cli.consent import consent_app
from vitalchain.cli.device import device_app, simulate
from vitalchain.cli.gateway import gateway_app
from vitalchain.cli.keys import key_app
from vitalchain.cli.portal import portal
from vitalchain.cli.provider import fhir_app, provider_app
from vitalchain.cli.verify import verify, verify_receipts
from vitalchain.demo.command import demo as _demo

__all__ = ["app"]

app = typer.Typer(
    cls=CliGroup,  # one error line with a code for every usage error
    help="vitalchain: blockchain-secured remote patient monitoring.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold keys
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """vitalchain: signed, encrypted vitals; trust groups, consent and anchors on Ethereum."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


_RUN, _CARE = "Set up and run", "Patients and providers"
app.add_typer(chain_app, name="chain", rich_help_panel=_RUN)
app.add_typer(gateway_app, name="gateway", rich_help_panel=_RUN)
app.command("demo", rich_help_panel=_RUN)(_demo)
app.add_typer(device_app, name="device", rich_help_panel=_RUN)
app.add_typer(key_app, name="key", rich_help_panel=_CARE)
app.add_typer(consent_app, name="consent", rich_help_panel=_CARE)
app.add_typer(provider_app, name="provider", rich_help_panel=_CARE)
app.add_typer(fhir_app, name="fhir", rich_help_panel=_CARE)
app.add_typer(alerts_app, name="alerts", rich_help_panel=_CARE)
app.command("portal", rich_help_panel=_CARE)(portal)
app.command("verify", rich_help_panel=_CARE)(verify)
app.command("verify-receipts", rich_help_panel=_CARE)(verify_receipts)
# `vitalchain simulate` predates the `device` group: kept as an alias, out of the listing.
app.command("simulate", hidden=True)(simulate)


@app.command("walkthrough", rich_help_panel=_RUN)
def walkthrough() -> None:
    """Walk through vitalchain's cryptography: sign, encrypt, ring-sign, prove inclusion."""
    from vitalchain.walkthrough import run

    run()
