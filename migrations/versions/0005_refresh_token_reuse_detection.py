"""App sessions keep the hash of the refresh token the last refresh replaced, so that its
reuse (a stolen token) can be recognised and the whole session revoked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('app_sessions', sa.Column('previous_refresh_token_hash', sa.Text(), nullable=True))
    op.create_unique_constraint(op.f('uq_app_sessions_previous_refresh_token_hash'), 'app_sessions',
                                ['previous_refresh_token_hash'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint(op.f('uq_app_sessions_previous_refresh_token_hash'), 'app_sessions', type_='unique')
    op.drop_column('app_sessions', 'previous_refresh_token_hash')
