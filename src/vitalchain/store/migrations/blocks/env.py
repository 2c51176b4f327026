"""Alembic's entry point for the block store's history (see vitalchain.store.migrations)."""

from vitalchain.store.migrations import run_env

run_env()
