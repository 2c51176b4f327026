"""The ``vitalchain`` command line (Typer).  Each command is a thin call into a service."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="vitalchain: blockchain-secured remote patient monitoring.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo() -> None:
    """Walk through vitalchain's cryptography: sign, encrypt, ring-sign, prove inclusion."""
    from vitalchain.walkthrough import run

    run()


@app.callback()
def main() -> None:
    """vitalchain: signed, encrypted vitals; trust groups, consent and anchors on Ethereum."""


if __name__ == "__main__":
    app()
