"""``python -m vitalchain`` is the ``vitalchain`` command."""

from vitalchain.cli import app

app()
