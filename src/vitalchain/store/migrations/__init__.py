"""The schema versions of the store's two databases: Alembic histories run from code.

- ``blocks/``: the block store (``store.db`` beside the blocks, or a PostgreSQL database).
- ``journal/``: the gateway's journal (``journal.db``, SQLite only).

Opening a store calls :func:`upgrade` on its database, so a gateway upgraded in place brings
its databases along; the revision reached is recorded in ``alembic_version``.  A database made
before these histories (its tables exist, no ``alembic_version``) holds exactly the first
revision's schema, so it is stamped with it, never recreated, and then upgraded.

No ``alembic.ini`` is needed: the :class:`~alembic.config.Config` is built here, and each
history's ``env.py`` runs the migrations on the connection (and in the transaction) the store
passes in.  A new revision is a new file in ``versions/`` whose ``down_revision`` is the
current head (``branch_labels`` and ``depends_on`` are left out: Alembic reads them as none,
and these histories have neither); write its operations out (never import today's tables
into a revision: a revision is a frozen record of one change).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

__all__ = ["BASELINE", "History", "head", "run_env", "upgrade"]

History = Literal["blocks", "journal"]
BASELINE = "0001"
"""The first revision of each history: the schema of every database made before them."""

# A table every database of the history has had since before the histories began.
_MARKER: dict[History, str] = {"blocks": "blocks", "journal": "messages"}
_HERE = Path(__file__).parent


def _config(history: History, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE / history))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head(history: History) -> str | None:
    """The newest revision of ``history`` (read once per process)."""
    return ScriptDirectory.from_config(_config(history)).get_current_head()


def upgrade(connection: Connection, history: History) -> None:
    """Bring the database behind ``connection`` to the head of ``history``, inside the
    caller's transaction: an empty one is created, one from before the histories is stamped
    with :data:`BASELINE` first, one already at the head is left alone."""
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None and current == head(history):
        return
    config = _config(history, connection)
    if current is None and _MARKER[history] in inspect(connection).get_table_names():
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


def run_env() -> None:
    """What each history's ``env.py`` does: run the migrations on the store's connection."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
