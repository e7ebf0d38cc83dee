"""Dead letters of the ingest: events left out of their batch because applying them failed
with a data error of their own (one bad event never costs another).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('ingest_dead_letters',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('stream', sa.Text(), nullable=False),
    sa.Column('conn', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('time_us', sa.BigInteger(), nullable=True),
    sa.Column('did', sa.Text(), nullable=True),
    sa.Column('collection', sa.Text(), nullable=True),
    sa.Column('rkey', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('event', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_dead_letters'))
    )
    op.create_index('idx_ingest_dead_letters_stream', 'ingest_dead_letters', ['stream', 'id'], unique=False)
    op.add_column('ingest_state', sa.Column('events_dead_lettered', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('ingest_state', 'events_dead_lettered')
    op.drop_index('idx_ingest_dead_letters_stream', table_name='ingest_dead_letters')
    op.drop_table('ingest_dead_letters')
