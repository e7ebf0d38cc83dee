"""B2B access: key rotation with an overlap, key expiry, revocation time, and usage rows
that can be flushed twice without counting twice.

- ``api_clients``: the current key may expire (``key_expires_at``); after a rotation the
  previous key id and hash stay valid until ``previous_key_expires_at`` (both key ids are
  unique, so a presented key id finds one client); ``revoked_at`` records when the client was
  switched off. Quotas and per-minute limits must be positive.
- ``api_usage.request_id``: a unique id given to each call by the web process, so that the
  flush from the Redis buffer is idempotent (``ON CONFLICT (request_id) DO NOTHING``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 03:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('api_clients', sa.Column('key_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_clients', sa.Column('previous_api_key', sa.Text(), nullable=True))
    op.add_column('api_clients', sa.Column('previous_secret_hash', sa.Text(), nullable=True))
    op.add_column('api_clients', sa.Column('previous_key_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_clients', sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_unique_constraint(op.f('uq_api_clients_previous_api_key'), 'api_clients', ['previous_api_key'])
    op.create_check_constraint(op.f('ck_api_clients_quota_positive'), 'api_clients',
                               'monthly_quota IS NULL OR monthly_quota > 0')
    op.create_check_constraint(op.f('ck_api_clients_rate_positive'), 'api_clients', 'rate_limit_per_min > 0')
    op.add_column('api_usage', sa.Column('request_id', sa.Uuid(as_uuid=False), nullable=True))
    op.create_unique_constraint(op.f('uq_api_usage_request_id'), 'api_usage', ['request_id'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint(op.f('uq_api_usage_request_id'), 'api_usage', type_='unique')
    op.drop_column('api_usage', 'request_id')
    op.drop_constraint(op.f('ck_api_clients_rate_positive'), 'api_clients', type_='check')
    op.drop_constraint(op.f('ck_api_clients_quota_positive'), 'api_clients', type_='check')
    op.drop_constraint(op.f('uq_api_clients_previous_api_key'), 'api_clients', type_='unique')
    op.drop_column('api_clients', 'revoked_at')
    op.drop_column('api_clients', 'previous_key_expires_at')
    op.drop_column('api_clients', 'previous_secret_hash')
    op.drop_column('api_clients', 'previous_api_key')
    op.drop_column('api_clients', 'key_expires_at')
