"""Alembic's entry point for the journal's history (see vitalchain.store.migrations)."""

from vitalchain.store.migrations import run_env

run_env()
