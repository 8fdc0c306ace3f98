"""Indexes for the dashboard's list: top-level requests, newest first, a page at a time.

The dashboard lists requests made by people (`requesting_container_uuid IS NULL`), newest first
with the uuid breaking ties, for one owner or (admins) for everyone. With the equality columns
and then both sort columns in one index, a page is a walk along the index that stops after the
page, and the count reads the index alone; before, every top-level request was sorted per page.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('container_requests', schema=None) as batch_op:
        batch_op.create_index(
            'ix_container_requests_owner_top', ['owner_uuid', 'requesting_container_uuid', 'created_at', 'uuid'],
            unique=False,
        )
        batch_op.create_index('ix_container_requests_top', ['requesting_container_uuid', 'created_at', 'uuid'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('container_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_container_requests_top')
        batch_op.drop_index('ix_container_requests_owner_top')
