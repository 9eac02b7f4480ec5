"""Programmable payments: rules a client sets and the worker executes.

- scheduled: pay `amount` to `to` at `at`, once, or every `every_s` seconds;
- sweep: keep at most `max` in tokens on a network; redeem the excess to the DDA.

Each execution is an ordinary operation whose idempotency key is made from the rule
and the run (rule id + due time), so a worker that dies mid-run and runs it again
creates nothing twice. The run is claimed in the transaction that records its operation,
on the condition that the rule is still active and still at that run: a cancel either
comes first (nothing is paid) or after (the payment was made before it), never between.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from andchain.db import write_transaction
from andchain.errors import DomainError, NotFound
from andchain.tokens import schema
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, holder_account
from andchain.tokens.service import TokenService

log = logging.getLogger(__name__)

EVERY_MIN_S = 60
RULES_PER_TICK_MAX = 100


class RuleChanged(DomainError):
    """A rule was cancelled, or run by another worker, between reading it and claiming its run."""


@dataclass(frozen=True)
class Rule:
    id: str
    client_id: str
    kind: str
    network: str
    params: dict[str, Any]
    status: str
    next_run_at_us: int
    runs: int


def _rule(row: Any) -> Rule:
    return Rule(
        row.id,
        row.client_id,
        row.kind,
        row.network,
        json.loads(row.params),
        row.status,
        int(row.next_run_at_us),
        int(row.runs),
    )


class Rules:
    def __init__(self, service: TokenService) -> None:
        self.s = service
        self.engine = service.ctx.engine
        self.clock = service.ctx.clock

    def schedule(
        self,
        client_ref: str,
        to_ref: str,
        network: str,
        amount_minor: int,
        memo: str,
        *,
        at_us: int | None = None,
        every_s: int | None = None,
        conn: Connection | None = None,
    ) -> Rule:
        """A scheduled payment; written in `conn` when given (the API stores its answer there too)."""
        client = self.s.client(client_ref)
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
            raise DomainError(
                f"amount must be a positive integer of minor units, was {amount_minor!r}", code="invalid_rule"
            )
        if every_s is not None and every_s < EVERY_MIN_S:
            raise DomainError(
                f"a repeating payment runs at most every {EVERY_MIN_S}s, was {every_s}", code="invalid_rule"
            )
        if len(memo.encode()) > 32:
            raise DomainError("a memo holds at most 32 bytes", code="invalid_rule")
        self.s.ctx.settings.network(network)
        # The payee last, as a payment does (Requests.pay): refused with field="payee".
        payee = self.s.requests.payee(to_ref)
        if client.id == payee.id:
            raise DomainError("a scheduled payment needs a different payee", code="invalid_rule")
        params = {"to": payee.id, "amount": amount_minor, "memo": memo, "every_s": every_s}
        return self._create(client.id, "scheduled", network, params, at_us if at_us is not None else self.clock(), conn)

    def sweep(self, client_ref: str, network: str, max_minor: int, *, conn: Connection | None = None) -> Rule:
        client = self.s.client(client_ref)
        if max_minor < 0:
            raise DomainError(f"the sweep threshold must not be negative, was {max_minor}", code="invalid_rule")
        self.s.ctx.settings.network(network)
        return self._create(client.id, "sweep", network, {"max": max_minor}, self.clock(), conn)

    def _create(
        self,
        client_id: str,
        kind: str,
        network: str,
        params: dict[str, Any],
        first_us: int,
        conn: Connection | None,
    ) -> Rule:
        if conn is None:
            with write_transaction(self.engine) as own:
                return self._create(client_id, kind, network, params, first_us, own)
        rule_id = self.s.ledger.ids.new_id().lower()
        now = self.clock()
        conn.execute(
            schema.rules.insert().values(
                id=rule_id,
                client_id=client_id,
                kind=kind,
                network=network,
                params=json.dumps(params),
                status="active",
                next_run_at_us=first_us,
                runs=0,
                created_at_us=now,
                updated_at_us=now,
            )
        )
        return self.get(rule_id, conn)

    def get(self, rule_id: str, conn: Connection | None = None) -> Rule:
        if conn is None:
            with self.engine.connect() as own:
                return self.get(rule_id, own)
        row = conn.execute(select(schema.rules).where(schema.rules.c.id == rule_id)).first()
        if row is None:
            raise NotFound(f"no rule {rule_id!r}", code="rule_not_found")
        return _rule(row)

    def list(
        self, client_ref: str | None = None, *, after_id: str | None = None, limit: int | None = None
    ) -> list[Rule]:
        """Rules in the order of their ids (time-ordered: the order they were made), a page at a time when
        `limit` is given: those after `after_id`."""
        t = schema.rules
        query = select(t).order_by(t.c.id)
        if client_ref:
            query = query.where(t.c.client_id == self.s.client(client_ref).id)
        if after_id is not None:
            query = query.where(t.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_rule(r) for r in conn.execute(query)]

    def cancel(self, rule_id: str) -> Rule:
        """Cancel an active rule: once this returns, no run of it creates anything more."""
        t = schema.rules
        with write_transaction(self.engine) as conn:
            rule = self.get(rule_id, conn)
            cancelled = conn.execute(
                update(t)
                .where(t.c.id == rule_id, t.c.status == "active")
                .values(status="cancelled", updated_at_us=self.clock())
            ).rowcount
        if cancelled != 1:
            raise DomainError(f"rule {rule_id} is already {rule.status}", code="rule_not_active")
        return self.get(rule_id)

    def tick(self) -> int:
        """Run every due rule once; returns how many operations were created."""
        now = self.clock()
        t = schema.rules
        with self.engine.connect() as conn:
            due = [
                _rule(r)
                for r in conn.execute(
                    select(t)
                    .where(t.c.status == "active", t.c.next_run_at_us <= now)
                    .order_by(t.c.next_run_at_us)
                    .limit(RULES_PER_TICK_MAX)
                )
            ]
        created = 0
        for rule in due:
            try:
                created += self._run(rule, now)
            except RuleChanged:
                continue  # cancelled, or run by another worker, since it was read
            except DomainError as exc:
                if exc.transient:
                    # A node or the database away: the rule stays due and runs on a later tick.
                    log.warning("rule run postponed rule=%s error=%s", rule.id, exc.message)
                    continue
                log.warning("rule run skipped rule=%s error=%s", rule.id, exc.message)
                with write_transaction(self.engine) as conn:
                    self._advance(rule, now, conn, failed=True, strict=False)
        return created

    def _run(self, rule: Rule, now: int) -> int:
        if rule.kind == "scheduled":
            p = rule.params
            self.s.requests.pay(
                rule.client_id,
                p["to"],
                rule.network,
                p["amount"],
                p["memo"],
                f"rule:{rule.id}:{rule.next_run_at_us}",
                before=self._claim(rule, now),
            )
            # The payment existed already (its claim was made with it): the run is claimed, or is now.
            with write_transaction(self.engine) as conn:
                self._advance(rule, now, conn, strict=False)
            return 1
        # Sweep: one redemption at a time, sized from the ledger's mirror of the holder.
        prefix = f"sweep:{rule.id}:"
        if any(
            op.idempotency_key.startswith(prefix) for op in self.s.ops.unfinished(kind="redeem", network=rule.network)
        ):
            return 0
        holder = self.s.holder(rule.client_id, rule.network)
        held = self.s.ledger.account(holder_account(rule.network, TOKENS[DEPOSIT_TOKEN], holder))
        excess = held.available - rule.params["max"]
        if excess <= 0:
            return 0
        self.s.requests.redeem(
            rule.client_id,
            rule.network,
            excess,
            f"sweep:{rule.id}:{held.credits_posted}",
            before=lambda conn: self._advance(rule, now, conn, sweep=True),
        )
        return 1

    def _claim(self, rule: Rule, now: int) -> Callable[[Connection], None]:
        return lambda conn: self._advance(rule, now, conn)

    def _advance(
        self,
        rule: Rule,
        now: int,
        conn: Connection,
        *,
        failed: bool = False,
        sweep: bool = False,
        strict: bool = True,
    ) -> None:
        """Move the rule past the run it was read at, on the condition that it is still active and
        still there: else (strict) RuleChanged, which rolls back the run's operation with it."""
        t = schema.rules
        values: dict[str, Any] = {"runs": rule.runs + (0 if failed else 1), "updated_at_us": now}
        every = rule.params.get("every_s")
        if every and not sweep:
            values["next_run_at_us"] = rule.next_run_at_us + every * 1_000_000
        elif not sweep:  # a sweep stays due: it runs whenever there is an excess
            values["status"] = "failed" if failed else "completed"
        moved = conn.execute(
            update(t)
            .where(
                t.c.id == rule.id,
                t.c.status == "active",
                t.c.next_run_at_us == rule.next_run_at_us,
                t.c.runs == rule.runs,
            )
            .values(**values)
        ).rowcount
        if moved != 1 and strict:
            raise RuleChanged(f"rule {rule.id} changed since it was read", code="rule_changed")
