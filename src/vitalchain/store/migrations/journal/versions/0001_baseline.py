"""The journal as it was before schema versions were recorded (issue 12's schema).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("received_at", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("leaf_index", sa.Integer),
        sa.Column("leaf", sa.LargeBinary),
    )
    op.create_table(
        "readings",
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column(
            "message",
            sa.Integer,
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("vital", sa.Integer, nullable=False),
        sa.Column("value", sa.REAL, nullable=False),
        sa.Column("t", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("device", "seq"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "seq_ranges",
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("first_seq", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("device", "first_seq"),
        sqlite_with_rowid=False,
    )
    op.create_index("seq_ranges_by_last", "seq_ranges", ["device", "last_seq"])
    op.create_index("messages_by_device", "messages", ["device", "id"])
    op.create_index("readings_by_message", "readings", ["message"])
    op.create_index(
        "messages_unsealed",
        "messages",
        ["group_id", "patient", "id"],
        sqlite_where=sa.text("leaf_index IS NULL"),
    )
    op.create_index(
        "messages_sealed",
        "messages",
        ["group_id", "leaf_index"],
        sqlite_where=sa.text("leaf_index IS NOT NULL"),
    )


def downgrade() -> None:
    for name in ("seq_ranges", "readings", "messages"):
        op.drop_table(name)
