"""The block store as it was before schema versions were recorded (issue 12's schema).

On SQLite a block's bytes are a file beside the database (``file``, its relative path); on
PostgreSQL they are the row's ``data`` (``bytea``).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    on_sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "blocks",
        sa.Column("id", _INT, sa.Identity(always=True), primary_key=True),
        sa.Column("group_id", _INT, nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("number", _INT, nullable=False),
        sa.Column("leaf_index", _INT, nullable=False),
        sa.Column("block_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("file", sa.Text, nullable=False)
        if on_sqlite
        else sa.Column("data", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("group_id", "patient", "number"),
        sa.UniqueConstraint("group_id", "leaf_index"),
    )
    op.create_table(
        "key_ring",
        sa.Column("block_id", _INT, sa.ForeignKey("blocks.id"), nullable=False),
        sa.Column("recipient", sa.LargeBinary, nullable=False),
        sa.Column("stanza", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("block_id", "recipient"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "anchors",
        sa.Column("group_id", _INT, nullable=False),
        sa.Column("tree_size", _INT, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("tx_hash", sa.LargeBinary, nullable=False),
        sa.Column("anchored_at", _INT, nullable=False),
        sa.PrimaryKeyConstraint("group_id", "tree_size"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "nonces",
        sa.Column("nonce", sa.LargeBinary, primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("expires_at", _INT, nullable=False),
        sa.Column("used_at", _INT),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    for name in ("nonces", "anchors", "key_ring", "blocks"):
        op.drop_table(name)
