"""An index for finding the oldest collection with some content.

A collection is found by its portable data hash as the oldest one with that content
(`ORDER BY created_at LIMIT 1`): completing a container does so for its output and log, and
`GET /collections/{pdh}` for every reader. With an index on the hash alone, every collection
with the same content was read and sorted, so the lookup grew with the history: identical
outputs (an empty file, a rerun's unchanged results) gain a copy with every request that makes
them. With the creation time after the hash in one index, the lookup stops at the first entry.
The new index also serves every lookup by hash alone, so the old one goes.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.create_index('ix_collections_pdh_created', ['portable_data_hash', 'created_at'], unique=False)
        batch_op.drop_index('ix_collections_portable_data_hash')


def downgrade() -> None:
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.create_index('ix_collections_portable_data_hash', ['portable_data_hash'], unique=False)
        batch_op.drop_index('ix_collections_pdh_created')
