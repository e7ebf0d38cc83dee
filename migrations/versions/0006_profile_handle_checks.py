"""When each profile's handle was last checked against the DID document and the handle's own
resolution (identity verification), so a sweep finds unresolved and stale profiles.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('profiles', sa.Column('handle_checked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('idx_profiles_handle_checked', 'profiles', ['handle_checked_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_profiles_handle_checked', table_name='profiles')
    op.drop_column('profiles', 'handle_checked_at')
