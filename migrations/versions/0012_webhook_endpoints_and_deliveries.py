"""B2B webhooks: the endpoints clients register (URL, event types, optional brand filter, the
encrypted whsec_ secret and the one it replaced during a rotation, why and when it was
disabled, since when it fails) and the deliveries queued for them (one per endpoint and event,
the delivery log and the retry state of the ``webhooks`` queue; indexed for the due sweep, the
log pages and the retention purge).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 03:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

EVENT_TYPES = ("high_intent_post", "brand_mention", "sentiment_shift", "trend_spike")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("brands", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("cardinality(event_types) >= 1 AND event_types <@ ARRAY["
                           + ", ".join(f"'{t}'" for t in EVENT_TYPES) + "]::text[]",
                           name=op.f("ck_webhook_endpoints_event_types")),
        sa.CheckConstraint("enabled OR disabled_reason IS NOT NULL",
                           name=op.f("ck_webhook_endpoints_disabled_has_reason")),
        sa.ForeignKeyConstraint(["client_id"], ["api_clients.id"], ondelete="CASCADE",
                                name=op.f("fk_webhook_endpoints_client_id_api_clients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index("idx_webhook_endpoints_client", "webhook_endpoints", ["client_id", "id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("last_status_code", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'failed', 'delivered', 'given_up')",
                           name=op.f("ck_webhook_deliveries_status")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="CASCADE",
                                name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
    )
    op.create_index("idx_webhook_deliveries_log", "webhook_deliveries", ["endpoint_id", sa.text("id DESC")],
                    unique=False)
    op.create_index("idx_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"], unique=False,
                    postgresql_where=sa.text("status IN ('pending', 'failed')"))
    op.create_index("idx_webhook_deliveries_created", "webhook_deliveries", ["created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("idx_webhook_deliveries_created", table_name="webhook_deliveries")
    op.drop_index("idx_webhook_deliveries_due", table_name="webhook_deliveries",
                  postgresql_where=sa.text("status IN ('pending', 'failed')"))
    op.drop_index("idx_webhook_deliveries_log", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("idx_webhook_endpoints_client", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
