"""Scheduled email reports: per client report settings and the delivery log.

- ``api_clients.report_emails`` / ``report_frequency``: where a client's report goes and how
  often (``daily`` or ``weekly``; NULL: no scheduled report). A frequency needs an address.
- ``report_deliveries``: one row per client, frequency and period, the unit of work of the
  ``reports`` queue and the delivery log at once. ``(client_id, period_start, frequency)`` is
  unique, so a period is reported once however often it is scheduled or retried; the row
  carries the attempt state (``sending`` with its claim, ``data_started_at`` once the message
  is being handed to the SMTP server), the deterministic Message-ID and the server's answer.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 06:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

STATUSES = ("pending", "retry", "sending", "sent", "failed", "unknown", "cancelled")


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('api_clients', sa.Column('report_emails', postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column('api_clients', sa.Column('report_frequency', sa.Text(), nullable=True))
    op.create_check_constraint(op.f('ck_api_clients_report_frequency'), 'api_clients',
                               "report_frequency IN ('daily', 'weekly')")
    op.create_check_constraint(op.f('ck_api_clients_report_has_recipients'), 'api_clients',
                               'report_frequency IS NULL OR cardinality(report_emails) >= 1')
    op.create_table(
        'report_deliveries',
        sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('frequency', sa.Text(), nullable=False),
        sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.Text(), server_default='pending', nullable=False),
        sa.Column('message_id', sa.Text(), nullable=False),
        sa.Column('recipients', postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column('attempts', sa.SmallInteger(), server_default='0', nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('smtp_response', sa.Text(), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claim_token', sa.Uuid(as_uuid=False), nullable=True),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('data_started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("frequency IN ('daily', 'weekly')", name=op.f('ck_report_deliveries_frequency')),
        sa.CheckConstraint('status IN (' + ', '.join(f"'{s}'" for s in STATUSES) + ')',
                           name=op.f('ck_report_deliveries_status')),
        sa.CheckConstraint('period_end > period_start', name=op.f('ck_report_deliveries_period')),
        sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], ondelete='CASCADE',
                                name=op.f('fk_report_deliveries_client_id_api_clients')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_report_deliveries')),
        sa.UniqueConstraint('client_id', 'period_start', 'frequency', name='uq_report_deliveries_client_period'),
    )
    op.create_index('idx_report_deliveries_log', 'report_deliveries', ['client_id', sa.text('id DESC')],
                    unique=False)
    op.create_index('idx_report_deliveries_due', 'report_deliveries', ['next_attempt_at'], unique=False,
                    postgresql_where=sa.text("status IN ('pending', 'retry', 'sending')"))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('idx_report_deliveries_due', table_name='report_deliveries',
                  postgresql_where=sa.text("status IN ('pending', 'retry', 'sending')"))
    op.drop_index('idx_report_deliveries_log', table_name='report_deliveries')
    op.drop_table('report_deliveries')
    op.drop_constraint(op.f('ck_api_clients_report_has_recipients'), 'api_clients', type_='check')
    op.drop_constraint(op.f('ck_api_clients_report_frequency'), 'api_clients', type_='check')
    op.drop_column('api_clients', 'report_frequency')
    op.drop_column('api_clients', 'report_emails')
