"""Indexes that serve the hot lookups completely, so no query planner can prefer a worse one.

SQLite without statistics picked `(state, priority)` for reuse lookups (it saves a sort) and
`(state)` for "Committed requests of this container", scanning every Queued container or
Committed request on each commit. An index with the equality columns *and* the sort column
wins on every count, on both dialects.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('containers', schema=None) as batch_op:
        batch_op.drop_index('ix_containers_reuse')
        batch_op.create_index('ix_containers_reuse', ['reuse_key', 'state', 'priority'], unique=False)
    with op.batch_alter_table('container_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_container_requests_container_uuid')
        batch_op.drop_index('ix_container_requests_requesting_container_uuid')
        batch_op.create_index('ix_container_requests_container', ['container_uuid', 'state', 'created_at'], unique=False)
        batch_op.create_index(
            'ix_container_requests_requesting', ['requesting_container_uuid', 'state', 'created_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('container_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_container_requests_requesting')
        batch_op.drop_index('ix_container_requests_container')
        batch_op.create_index('ix_container_requests_requesting_container_uuid', ['requesting_container_uuid'], unique=False)
        batch_op.create_index('ix_container_requests_container_uuid', ['container_uuid'], unique=False)
    with op.batch_alter_table('containers', schema=None) as batch_op:
        batch_op.drop_index('ix_containers_reuse')
        batch_op.create_index('ix_containers_reuse', ['reuse_key', 'state'], unique=False)
