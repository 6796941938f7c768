"""The job table as round 1 left it: jobs, their events and checkpoints (adopts a home made before
migrations, adding the columns its earlier versions lacked).

Revision ID: jobs_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "jobs_0001"
down_revision = None
branch_labels = None
depends_on = None


def later_columns() -> list[sa.Column]:
    """Columns that versions before migrations added one by one: a home may lack any of them."""
    return [
        sa.Column("promoting", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pid", sa.Integer),
        sa.Column("error_code", sa.Text),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.Column("trained_tokens", sa.BigInteger),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    have = set(inspector.get_table_names())
    if "jobs" not in have:
        op.create_table(
            "jobs",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("task", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("request", sa.Text, nullable=False),
            sa.Column("progress", sa.Text, nullable=False, server_default="{}"),
            sa.Column("result", sa.Text, nullable=False, server_default="{}"),
            sa.Column("error", sa.Text),
            sa.Column("cancel_requested", sa.Integer, nullable=False, server_default="0"),
            sa.Column("created_at", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Text, nullable=False),
            sa.Column("started_at", sa.Text),
            sa.Column("finished_at", sa.Text),
            *later_columns(),
        )
    else:
        present = {c["name"] for c in inspector.get_columns("jobs")}
        for column in later_columns():
            if column.name not in present:
                op.add_column("jobs", column)
    if "job_events" not in have:
        op.create_table(
            "job_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job_id", sa.Text, nullable=False),
            sa.Column("created_at", sa.Text, nullable=False),
            sa.Column("level", sa.Text, nullable=False),
            sa.Column("type", sa.Text, nullable=False),
            sa.Column("message", sa.Text, nullable=False),
            sa.Column("data", sa.Text, nullable=False, server_default="{}"),
        )
        op.create_index("job_events_by_job", "job_events", ["job_id", "id"])
    if "job_checkpoints" not in have:
        op.create_table(
            "job_checkpoints",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job_id", sa.Text, nullable=False),
            sa.Column("candidate", sa.Text, nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("train_loss", sa.Float),
            sa.Column("validation_loss", sa.Float),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("created_at", sa.Text, nullable=False),
        )
        op.create_index("job_checkpoints_by_job", "job_checkpoints", ["job_id", "id"])


def downgrade() -> None:
    for table in ("job_checkpoints", "job_events", "jobs"):
        op.drop_table(table)
