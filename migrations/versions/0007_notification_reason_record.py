"""What a notification needs to be shown without the index: the cid and slim record of the
post that caused it (reply, mention, quote), and an index to delete notifications by cause.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 01:15:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('notifications', sa.Column('reason_cid', sa.Text(), nullable=True))
    op.add_column('notifications', sa.Column('reason_record', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.create_index('idx_notifications_reason_uri', 'notifications', ['reason_uri'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_notifications_reason_uri', table_name='notifications')
    op.drop_column('notifications', 'reason_record')
    op.drop_column('notifications', 'reason_cid')
