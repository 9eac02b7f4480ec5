"""Partner apps, consents, authorization codes and tokens (OAuth 2.0, docs/connect.md)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text, UniqueConstraint

from andchain.db import metadata

# A partner app (an exchange): an OAuth client. Public clients (no secret) must use PKCE, as all do.
partners = Table(
    "connect_partners",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hmac", String(64), nullable=True),  # none: a public client
    Column("redirect_uris", Text, nullable=False),  # JSON list, matched exactly
    Column("scopes", Text, nullable=False),  # JSON list: what it may ask for
    Column("active", Boolean, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

# What a customer granted a partner: scopes, accounts, for how long. ACTIVE until it expires or the
# customer revokes it; every token of a consent stops working with it.
consents = Table(
    "connect_consents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("client_id", String(64), nullable=False),  # the partner
    Column("customer", String(64), nullable=False),  # the bank's client
    Column("scopes", Text, nullable=False),  # JSON list
    Column("accounts", Text, nullable=False),  # JSON list of ledger account ids
    Column("status", String(16), nullable=False),  # active | revoked (expired: by its time)
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("revoked_at_us", BigInteger, nullable=True),
    Index("ix_connect_consents_customer", "customer", "created_at_us"),
)

codes = Table(
    "connect_codes",
    metadata,
    Column("code_hmac", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("consent_id", String(40), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=True),
    Column("code_challenge_method", String(8), nullable=True),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False),
)

# Access and refresh tokens, kept as keyed hashes. A refresh token is used once: the rotation
# issues a new pair and retires the old; a retired one presented again revokes its consent's tokens.
tokens = Table(
    "connect_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("access_hmac", String(64), nullable=False),
    Column("refresh_hmac", String(64), nullable=True),
    Column("client_id", String(64), nullable=False),
    Column("consent_id", String(40), nullable=False),
    Column("scope", Text, nullable=False),
    Column("issued_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("refresh_expires_at_us", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False),
    Column("refresh_used", Boolean, nullable=False),
    Index("ix_connect_tokens_consent", "consent_id"),
    UniqueConstraint("access_hmac", name="uq_connect_tokens_access"),
    UniqueConstraint("refresh_hmac", name="uq_connect_tokens_refresh"),
)

# A partner's pull from a customer's account (an ACH-like debit the bank receives): held when it
# arrives, posted when its settlement date comes, settled when its return window closes; returned
# (R01, R02, R10...) before that, which releases or reverses it.
pulls = Table(
    "connect_pulls",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("client_id", String(64), nullable=False),  # the partner
    Column("idempotency_key", String(200), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("consent_id", String(40), nullable=False),
    Column("customer", String(64), nullable=False),
    Column("account_id", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("memo", String(140), nullable=False),
    Column("status", String(16), nullable=False),  # pending | posted | settled | returned
    Column("return_code", String(4), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("post_at_us", BigInteger, nullable=False),
    Column("settle_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("client_id", "idempotency_key", name="uq_connect_pulls_key"),
    Index("ix_connect_pulls_customer", "customer", "created_at_us"),
    Index("ix_connect_pulls_due", "status", "post_at_us"),
)

# Retail credit cards: each has a credit line in the ledger (`clients:<customer>:card:<card id>`, its
# available credit), funded with the limit when the card is issued.
cards = Table(
    "connect_cards",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer", String(64), nullable=False),
    Column("limit_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # active | closed
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_connect_cards_customer", "customer"),
)

# A partner's charge on a card: an authorization (a hold on the available credit) captured, voided, or
# expired after `connect.card_auth_ttl_s`. A crypto purchase (MCC 6051) is a cash advance, with its fee.
card_auths = Table(
    "connect_card_auths",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("card_id", String(40), nullable=False),
    Column("client_id", String(64), nullable=False),  # the partner
    Column("idempotency_key", String(200), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("customer", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("merchant", String(100), nullable=False),
    Column("cash_advance", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # authorized | captured | voided (expired: by the ledger)
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("client_id", "idempotency_key", name="uq_connect_card_auths_key"),
    Index("ix_connect_card_auths_card", "card_id", "created_at_us"),
)

# Rewards points redeemed for USDC delivered to the customer's own wallet from the bank's treasury at
# its custodian: the points held until the custodian completes the withdrawal, then taken (or released).
redemptions = Table(
    "connect_redemptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer", String(64), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("usdc_minor", BigInteger, nullable=False),
    Column("network", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("withdrawal_id", String(40), nullable=False),  # the custody_withdrawal operation
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("customer", "idempotency_key", name="uq_connect_redemptions_key"),
    Index("ix_connect_redemptions_status", "status"),
)
