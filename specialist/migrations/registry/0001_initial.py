"""The registry as round 1 left it: versions, routes, history (adopts a home made before migrations).

Revision ID: registry_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "registry_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "versions" not in have:
        op.create_table(
            "versions",
            sa.Column("task", sa.Text, primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("adapter_sha256", sa.Text, nullable=False),
            sa.Column("base_model", sa.Text, nullable=False),
            sa.Column("base_sha256", sa.Text, nullable=False),
            sa.Column("gate_passed", sa.Integer, nullable=False),
            sa.Column("skip_gate", sa.Integer, nullable=False),
            sa.Column("scores", sa.Text, nullable=False),
            sa.Column("created_at", sa.Text, nullable=False),
        )
    if "routes" not in have:
        op.create_table(
            "routes",
            sa.Column("task", sa.Text, primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("updated_at", sa.Text, nullable=False),
        )
    if "history" not in have:
        op.create_table(
            "history",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("task", sa.Text, nullable=False),
            sa.Column("action", sa.Text, nullable=False),
            sa.Column("from_version", sa.Integer),
            sa.Column("to_version", sa.Integer),
            sa.Column("actor", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("at", sa.Text, nullable=False),
        )


def downgrade() -> None:
    for table in ("history", "routes", "versions"):
        op.drop_table(table)
