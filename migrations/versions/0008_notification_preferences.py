"""Per-member notification preferences: which reasons push, and a mute until a time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 01:20:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'notification_preferences',
        sa.Column('did', sa.Text(), nullable=False),
        sa.Column('push_reasons', postgresql.ARRAY(sa.Text()),
                  server_default=sa.text("'{like,repost,follow,reply,mention,quote}'::text[]"), nullable=False),
        sa.Column('muted_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("push_reasons <@ '{like,repost,follow,reply,mention,quote}'::text[]",
                           name=op.f('ck_notification_preferences_push_reasons')),
        sa.PrimaryKeyConstraint('did', name=op.f('pk_notification_preferences')),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('notification_preferences')
