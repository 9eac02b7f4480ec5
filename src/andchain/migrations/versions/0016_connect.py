"""Bank-to-wallet: partner apps, consents, authorization codes, tokens, account pulls, cards, rewards redemptions.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connect_partners",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hmac", sa.String(64), nullable=True),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_connect_partners"),
    )
    op.create_table(
        "connect_consents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("accounts", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_connect_consents"),
    )
    op.create_index("ix_connect_consents_customer", "connect_consents", ["customer", "created_at_us"])
    op.create_table(
        "connect_codes",
        sa.Column("code_hmac", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(8), nullable=True),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("code_hmac", name="pk_connect_codes"),
    )
    op.create_table(
        "connect_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("access_hmac", sa.String(64), nullable=False),
        sa.Column("refresh_hmac", sa.String(64), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("issued_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("refresh_expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("refresh_used", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connect_tokens"),
        sa.UniqueConstraint("access_hmac", name="uq_connect_tokens_access"),
        sa.UniqueConstraint("refresh_hmac", name="uq_connect_tokens_refresh"),
    )
    op.create_index("ix_connect_tokens_consent", "connect_tokens", ["consent_id"])
    op.create_table(
        "connect_pulls",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("memo", sa.String(140), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("return_code", sa.String(4), nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("post_at_us", sa.BigInteger, nullable=False),
        sa.Column("settle_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connect_pulls"),
        sa.UniqueConstraint("client_id", "idempotency_key", name="uq_connect_pulls_key"),
    )
    op.create_index("ix_connect_pulls_customer", "connect_pulls", ["customer", "created_at_us"])
    op.create_index("ix_connect_pulls_due", "connect_pulls", ["status", "post_at_us"])
    op.create_table(
        "connect_cards",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("limit_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connect_cards"),
    )
    op.create_index("ix_connect_cards_customer", "connect_cards", ["customer"])
    op.create_table(
        "connect_card_auths",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("fee_minor", sa.BigInteger, nullable=False),
        sa.Column("mcc", sa.String(4), nullable=False),
        sa.Column("merchant", sa.String(100), nullable=False),
        sa.Column("cash_advance", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connect_card_auths"),
        sa.UniqueConstraint("client_id", "idempotency_key", name="uq_connect_card_auths_key"),
    )
    op.create_index("ix_connect_card_auths_card", "connect_card_auths", ["card_id", "created_at_us"])
    op.create_table(
        "connect_redemptions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("usdc_minor", sa.BigInteger, nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("withdrawal_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connect_redemptions"),
        sa.UniqueConstraint("customer", "idempotency_key", name="uq_connect_redemptions_key"),
    )
    op.create_index("ix_connect_redemptions_status", "connect_redemptions", ["status"])


def downgrade() -> None:
    op.drop_table("connect_redemptions")
    op.drop_table("connect_card_auths")
    op.drop_table("connect_cards")
    op.drop_table("connect_pulls")
    op.drop_table("connect_tokens")
    op.drop_table("connect_codes")
    op.drop_table("connect_consents")
    op.drop_table("connect_partners")
