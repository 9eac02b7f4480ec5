"""Webhook subscriptions and their deliveries: at least once, signed, retried on a schedule, logged.

A subscription names a URL, the client whose events it receives (or none: the bank's,
every event) and optionally the types it wants. Its signing secret (`whsec_` + base64
of 32 random bytes) is shown once, when it is created.

Delivery runs in the worker (`andchain.tokens.runtime.WebhooksPart`), in two steps:

- **fan-out**: each active subscription keeps the id of the last event it has turned into
  deliveries; the events after it (read up to the log's horizon, so none is skipped,
  see andchain.events.store) become one delivery row each, and the id moves on, in one
  transaction that changes it only from the value it read (two workers never fan out the
  same events twice);
- **delivery**: due deliveries are claimed with a lease (`FOR UPDATE SKIP LOCKED` on
  PostgreSQL; SQLite's single writer) so that two workers never send the same delivery at
  once, sent with the Standard Webhooks headers (`webhook-id` = `evt_<event id>`, the same
  on every attempt and replay; `webhook-timestamp`; `webhook-signature` made by the
  `standardwebhooks` package), and the outcome recorded only if the claim is still ours.
  A 2xx answer is success; anything else (an error status, a refused connection, a
  timeout) is retried after the next delay of the schedule (`events.retry_schedule_s`,
  the Standard Webhooks one by default: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
  20 h, 24 h); after the last the delivery is `failed`. A success also brings every
  delivery of the same subscription that waits for a retry forward to now: a receiver back
  after an outage gets its backlog at once, not at each delivery's next slot.

At least once: a worker that sent a delivery and stalled past its lease before recording
the answer may see another worker send it again; the `webhook-id` is the same, so the
receiver can tell. Every attempt and every replay is written to the delivery log.
"""

from __future__ import annotations

import base64
import builtins
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Connection, Engine, and_, func, or_, select, true, update
from standardwebhooks import Webhook

from andchain.config import EventsSettings, shown_url
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import schema
from andchain.events.store import Event, EventLog, TypeFilter, canonical, iso, type_filter
from andchain.ledger.model import Clock, IdSource, system_clock_us
from andchain.tls import tls_context

log = logging.getLogger(__name__)

W = schema.webhooks
D = schema.deliveries
A = schema.attempts
E = schema.events

PENDING, SUCCEEDED, FAILED, CANCELLED = "pending", "succeeded", "failed", "cancelled"
DELIVERY_STATUSES = (PENDING, SUCCEEDED, FAILED, CANCELLED)
PAGE_MAX = 1000
REPLAY_MAX = 1000
SUBSCRIPTIONS_MAX = 100  # active ones per client, and for the bank
URL_LENGTH_MAX = 2000
DESCRIPTION_LENGTH_MAX = 500
ERROR_LENGTH_MAX = 500
ATTEMPTS_SHOWN_MAX = 50
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "andchain-webhooks/1"


class ClientMismatch(DomainError):
    """A caller restricted to one client asked for another's."""

    code = "forbidden"
    http_status = 403


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    client_id: str | None
    types: TypeFilter | None
    description: str
    active: bool
    after_event_id: int
    created_at_us: int
    updated_at_us: int

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "client_id": self.client_id,
            "types": None if self.types is None else self.types.as_list(),
            "description": self.description,
            "active": self.active,
            "after_event_id": self.after_event_id,
            "created_at": iso(self.created_at_us),
            "updated_at": iso(self.updated_at_us),
        }


@dataclass(frozen=True)
class AttemptRecord:
    at_us: int
    kind: str  # attempt | replay
    status_code: int | None
    error: str | None
    duration_ms: int | None

    def view(self) -> dict[str, Any]:
        return {
            "at": iso(self.at_us),
            "kind": self.kind,
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: str
    event_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at_us: int
    last_status_code: int | None
    last_error: str | None
    created_at_us: int
    updated_at_us: int
    log: tuple[AttemptRecord, ...] = ()

    @property
    def message_id(self) -> str:
        return message_id(self.event_id)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "message_id": self.message_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at_us) if self.status == PENDING else None,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "created_at": iso(self.created_at_us),
            "updated_at": iso(self.updated_at_us),
            "log": [a.view() for a in self.log],
        }


@dataclass(frozen=True)
class Replayed:
    queued: int
    position: int  # the last event id considered: replay again from here for more
    more: bool


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    attempts: int
    webhook_id: str
    url: str
    secret: str
    event: Event


def message_id(event_id: int) -> str:
    """The `webhook-id` of an event's deliveries: the same on every attempt and every replay."""
    return f"evt_{event_id}"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def public_address(address: str) -> bool:
    """Whether an IP address is one of the internet's: not loopback, private, link-local (the cloud's
    metadata service), shared, reserved or multicast. An IPv4 address written as IPv6 is judged as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_url(url: str, *, allow_http: bool, private_targets: bool = False) -> str:
    """An endpoint the worker may POST to: http(s), a host, no credentials, no spaces or controls;
    unless `private_targets`, not an address of this machine or of the bank's own network (what a
    name resolves to is checked again at every attempt, see `Target`)."""

    def refuse(why: str) -> DomainError:
        return DomainError(f"webhook url {url[:100]!r} {why}", code="invalid_url")

    if not isinstance(url, str) or not 0 < len(url) <= URL_LENGTH_MAX:
        raise DomainError(f"a webhook url has 1 to {URL_LENGTH_MAX} characters", code="invalid_url")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise refuse("must be ASCII without spaces or control characters (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"cannot be read: {exc}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise refuse(f"must start with {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise refuse("names no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("must not carry credentials")
    if port == 0:
        raise refuse("names port 0")
    if parts.fragment:
        raise refuse("must not have a #fragment")
    host = parts.hostname.rstrip(".").lower()
    if not private_targets and (
        host == "localhost" or host.endswith(".localhost") or (_literal(host) and not public_address(host))
    ):
        raise refuse("names a loopback, private or link-local address (events.private_targets is off)")
    return url


class TargetRefused(Exception):
    """An endpoint the worker will not connect to (what its name resolves to), or cannot resolve."""


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the URL itself, or, when private targets are refused, the URL's
    host resolved once and checked, the connection pinned to that checked address (the `Host`
    header and the TLS server name stay the URL's), so a name that resolves elsewhere a moment
    later (DNS rebinding) cannot lead the request inside."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]
    pool: str

    @classmethod
    def of(
        cls,
        url: str,
        *,
        private_targets: bool,
        resolve: Callable[..., Sequence[Any]] = socket.getaddrinfo,
    ) -> Target:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if private_targets:
            return cls(url, {}, {}, "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        if not addresses:
            raise TargetRefused(f"cannot resolve {host}: no address")
        private = [a for a in addresses if not public_address(a)]
        if private:
            raise TargetRefused(
                f"{host} resolves to {private[0]}, not a public address (events.private_targets is off)"
            )
        address = addresses[0]
        pinned = urlunsplit(
            (
                parts.scheme,
                f"[{address}]:{port}" if ":" in address else f"{address}:{port}",
                parts.path,
                parts.query,
                "",
            )
        )
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        # One connection pool per name: a TLS connection made for one name is never reused for another.
        return cls(pinned, {"host": parts.netloc}, extensions, host)


def _subscription_of(row: Any) -> Subscription:
    m = row._mapping
    return Subscription(
        id=m["id"],
        url=m["url"],
        client_id=m["client_id"],
        types=type_filter(json.loads(m["types"])) if m["types"] else None,
        description=m["description"],
        active=bool(m["active"]),
        after_event_id=int(m["after_event_id"]),
        created_at_us=int(m["created_at_us"]),
        updated_at_us=int(m["updated_at_us"]),
    )


def _delivery_of(row: Any, attempts: Sequence[AttemptRecord] = ()) -> Delivery:
    m = row._mapping
    return Delivery(
        id=int(m["id"]),
        webhook_id=m["webhook_id"],
        event_id=int(m["event_id"]),
        event_type=m["type"],
        status=m["status"],
        attempts=int(m["attempts"]),
        next_attempt_at_us=int(m["next_attempt_at_us"]),
        last_status_code=m["last_status_code"],
        last_error=m["last_error"],
        created_at_us=int(m["created_at_us"]),
        updated_at_us=int(m["updated_at_us"]),
        log=tuple(attempts),
    )


def _visible(client_id: str | None) -> Any:
    return true() if client_id is None else W.c.client_id == client_id


class Webhooks:
    def __init__(
        self,
        engine: Engine,
        settings: EventsSettings | None = None,
        *,
        clock: Clock = system_clock_us,
        ids: IdSource | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        resolve: Callable[..., Sequence[Any]] = socket.getaddrinfo,
    ) -> None:
        self.engine = engine
        self.settings = settings or EventsSettings()
        self.clock = clock
        self.ids = ids or IdSource(clock_us=clock)
        self.monotonic = monotonic
        self.resolve = resolve
        self.events = EventLog(engine)

    # ---------------------------------------------------------- subscriptions

    def create(
        self,
        url: str,
        *,
        types: Sequence[str] | None = None,
        description: str = "",
        subscriber: str | None = None,
        client_id: str | None = None,
        conn: Connection | None = None,
    ) -> tuple[Subscription, str]:
        """A new subscription and its secret (returned this once). It receives the events that happen
        from now on: those of `subscriber` (a client id), or every event when None (the bank's).

        `client_id` restricts the caller to one client: the subscription is then that client's.
        Written in `conn` when given (the API stores its answer in the same transaction).
        """
        if client_id is not None:
            if subscriber is not None and subscriber != client_id:
                raise ClientMismatch("a client subscribes to its own events only")
            subscriber = client_id
        if subscriber is not None and not (isinstance(subscriber, str) and 0 < len(subscriber) <= 64):
            raise DomainError("client_id has 1 to 64 characters", code="invalid_request")
        check_url(url, allow_http=self.settings.allow_http, private_targets=self.settings.private_targets)
        if not isinstance(description, str) or len(description) > DESCRIPTION_LENGTH_MAX:
            raise DomainError(f"a description has at most {DESCRIPTION_LENGTH_MAX} characters", code="invalid_request")
        wanted = type_filter(types) if types else None
        secret = new_secret()
        now = self.clock()
        webhook_id = "wh_" + self.ids.new_id()
        with ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(write_transaction(self.engine))
            owner = W.c.client_id.is_(None) if subscriber is None else W.c.client_id == subscriber
            active = conn.execute(select(func.count()).select_from(W).where(owner, W.c.active.is_(True))).scalar_one()
            if active >= SUBSCRIPTIONS_MAX:
                raise DomainError(
                    f"at most {SUBSCRIPTIONS_MAX} active webhooks per client (and for the bank); deactivate one first",
                    code="too_many_webhooks",
                )
            conn.execute(
                W.insert().values(
                    id=webhook_id,
                    url=url,
                    secret=secret,
                    client_id=subscriber,
                    types=None if wanted is None else json.dumps(wanted.as_list()),
                    description=description,
                    active=True,
                    after_event_id=self.events.head(),
                    created_at_us=now,
                    updated_at_us=now,
                )
            )
            created = self.get(webhook_id, conn=conn)
        log.info("webhook created id=%s client=%s url=%s", webhook_id, subscriber, shown_url(url))
        return created, secret

    def get(self, webhook_id: str, *, client_id: str | None = None, conn: Connection | None = None) -> Subscription:
        if conn is None:
            with self.engine.connect() as own:
                return self.get(webhook_id, client_id=client_id, conn=own)
        row = conn.execute(select(W).where(W.c.id == webhook_id, _visible(client_id))).first()
        if row is None:
            raise NotFound(f"no webhook {webhook_id[:60]!r}", code="webhook_not_found")
        return _subscription_of(row)

    def list(
        self, *, client_id: str | None = None, after: str | None = None, limit: int = 100
    ) -> builtins.list[Subscription]:
        query = select(W).where(_visible(client_id)).order_by(W.c.id).limit(max(1, min(limit, PAGE_MAX)))
        if after:
            query = query.where(W.c.id > after)
        with self.engine.connect() as conn:
            return [_subscription_of(r) for r in conn.execute(query)]

    def deactivate(self, webhook_id: str, *, client_id: str | None = None) -> Subscription:
        """Stop a subscription: nothing more is fanned out to it, and its pending deliveries are cancelled."""
        sub = self.get(webhook_id, client_id=client_id)
        now = self.clock()
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(W).where(W.c.id == sub.id, W.c.active.is_(True)).values(active=False, updated_at_us=now)
            )  # the row lock serialises it with replays (see _lock)
            conn.execute(
                update(D)
                .where(D.c.webhook_id == sub.id, D.c.status == PENDING)
                .values(status=CANCELLED, lease_owner=None, lease_until_us=None, updated_at_us=now)
            )
        log.info("webhook deactivated id=%s", sub.id)
        return self.get(sub.id)

    # ------------------------------------------------------------- deliveries

    def _deliveries(self, conn: Connection, where: Any, limit: int) -> builtins.list[Delivery]:
        rows = conn.execute(
            select(D, E.c.type).join(E, E.c.id == D.c.event_id).where(where).order_by(D.c.id).limit(limit)
        ).all()
        found: dict[int, builtins.list[AttemptRecord]] = {int(r.id): [] for r in rows}
        if found:
            log_rows = conn.execute(
                select(A).where(A.c.delivery_id.in_(list(found))).order_by(A.c.delivery_id, A.c.seq)
            ).all()
            for a in log_rows:
                found[int(a.delivery_id)].append(
                    AttemptRecord(int(a.at_us), a.kind, a.status_code, a.error, a.duration_ms)
                )
        return [_delivery_of(r, found[int(r.id)][-ATTEMPTS_SHOWN_MAX:]) for r in rows]

    def deliveries(
        self,
        webhook_id: str,
        *,
        client_id: str | None = None,
        status: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> builtins.list[Delivery]:
        """A subscription's deliveries, oldest first, each with its log (the latest attempts and replays)."""
        sub = self.get(webhook_id, client_id=client_id)
        if status is not None and status not in DELIVERY_STATUSES:
            raise DomainError(
                f"a delivery status is one of {', '.join(DELIVERY_STATUSES)}, was {status[:40]!r}",
                code="invalid_request",
            )
        where = and_(D.c.webhook_id == sub.id, D.c.id > after, true() if status is None else D.c.status == status)
        with self.engine.connect() as conn:
            return self._deliveries(conn, where, max(1, min(limit, PAGE_MAX)))

    def delivery(self, webhook_id: str, delivery_id: int, *, client_id: str | None = None) -> Delivery:
        sub = self.get(webhook_id, client_id=client_id)
        with self.engine.connect() as conn:
            found = self._deliveries(conn, and_(D.c.webhook_id == sub.id, D.c.id == delivery_id), 1)
        if not found:
            raise NotFound(f"webhook {sub.id} has no delivery {delivery_id}", code="delivery_not_found")
        return found[0]

    def _active(self, webhook_id: str, client_id: str | None) -> Subscription:
        sub = self.get(webhook_id, client_id=client_id)
        if not sub.active:
            raise Conflict(f"webhook {sub.id} is deactivated: nothing is delivered to it", code="webhook_inactive")
        return sub

    def _lock(self, conn: Connection, webhook_id: str) -> None:
        """Serialise the writers of one subscription's deliveries (replays, fan-out, deactivation) on
        PostgreSQL, and refuse when the subscription was deactivated meanwhile: a replay racing a
        deactivation never queues anything for a URL that was unsubscribed."""
        query = select(W.c.active).where(W.c.id == webhook_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        if not conn.execute(query).scalar_one():
            raise Conflict(f"webhook {webhook_id} is deactivated: nothing is delivered to it", code="webhook_inactive")

    def replay(self, webhook_id: str, delivery_id: int, *, client_id: str | None = None) -> Delivery:
        """Deliver again, now, whatever became of it: a fresh schedule, the same webhook-id."""
        sub = self._active(webhook_id, client_id)
        now = self.clock()
        with write_transaction(self.engine) as conn:
            self._lock(conn, sub.id)
            done = conn.execute(
                update(D)
                .where(D.c.id == delivery_id, D.c.webhook_id == sub.id)
                .values(status=PENDING, attempts=0, next_attempt_at_us=now, updated_at_us=now)
            )
            if done.rowcount != 1:
                raise NotFound(f"webhook {sub.id} has no delivery {delivery_id}", code="delivery_not_found")
            conn.execute(A.insert().values(delivery_id=delivery_id, at_us=now, kind="replay"))
        log.info("webhook delivery replayed webhook=%s delivery=%d", sub.id, delivery_id)
        return self.delivery(sub.id, delivery_id)

    def replay_since(
        self, webhook_id: str, after_event_id: int, *, client_id: str | None = None, limit: int = REPLAY_MAX
    ) -> Replayed:
        """Queue again every event after `after_event_id` that the subscription receives, up to `limit`
        of them (ask again from `position` for more): existing deliveries are replayed, events from
        before the subscription existed get a delivery."""
        sub = self._active(webhook_id, client_id)
        page = self.events.read(
            after=after_event_id,
            limit=max(1, min(limit, REPLAY_MAX)),
            types=sub.types,
            client_id=sub.client_id,
            upto=sub.after_event_id,
        )
        if not page.events:
            return Replayed(0, page.position, False)
        now = self.clock()
        ids = [e.id for e in page.events]
        with write_transaction(self.engine) as conn:
            self._lock(conn, sub.id)
            existing = {
                int(r.event_id): int(r.id)
                for r in conn.execute(
                    select(D.c.id, D.c.event_id).where(D.c.webhook_id == sub.id, D.c.event_id.in_(ids))
                )
            }
            if existing:
                conn.execute(
                    update(D)
                    .where(D.c.id.in_(list(existing.values())))
                    .values(status=PENDING, attempts=0, next_attempt_at_us=now, updated_at_us=now)
                )
                conn.execute(
                    A.insert(), [{"delivery_id": d, "at_us": now, "kind": "replay"} for d in existing.values()]
                )
            missing = [i for i in ids if i not in existing]
            if missing:
                conn.execute(D.insert(), [self._new_delivery(sub.id, i, now) for i in missing])
        log.info("webhook replayed webhook=%s events=%d after=%d", sub.id, len(ids), after_event_id)
        return Replayed(len(ids), page.position, page.more)

    def _new_delivery(self, webhook_id: str, event_id: int, now: int) -> dict[str, Any]:
        return {
            "webhook_id": webhook_id,
            "event_id": event_id,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at_us": now + int(self.settings.retry_schedule_s[0] * 1_000_000),
            "created_at_us": now,
            "updated_at_us": now,
        }

    # ----------------------------------------------------------------- worker

    def fan_out(self) -> int:
        """Turn the events each active subscription has not seen into deliveries; how many were made."""
        head = self.events.head()
        made = 0
        after = ""
        for _ in range(1_000_000):  # pages of subscriptions: bounded by how many there are
            with self.engine.connect() as conn:
                subs = [
                    _subscription_of(r)
                    for r in conn.execute(
                        select(W).where(W.c.active.is_(True), W.c.id > after).order_by(W.c.id).limit(PAGE_MAX)
                    )
                ]
            for sub in subs:
                if sub.after_event_id < head:
                    made += self._fan_out_one(sub, head)
            if len(subs) < PAGE_MAX:
                return made
            after = subs[-1].id
        return made

    def _fan_out_one(self, sub: Subscription, head: int) -> int:
        page = self.events.read(
            after=sub.after_event_id,
            limit=self.settings.fanout_batch_max,
            types=sub.types,
            client_id=sub.client_id,
            upto=head,
        )
        if page.position <= sub.after_event_id:
            return 0
        now = self.clock()
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(W)
                .where(W.c.id == sub.id, W.c.after_event_id == sub.after_event_id, W.c.active.is_(True))
                .values(after_event_id=page.position, updated_at_us=now)
            )
            if moved.rowcount != 1:
                return 0  # another worker fanned these out, or the subscription was deactivated
            if page.events:
                conn.execute(D.insert(), [self._new_delivery(sub.id, e.id, now) for e in page.events])
        return len(page.events)

    def _claim(self, owner: str) -> builtins.list[_Claimed]:
        now = self.clock()
        lease_us = int(self.settings.delivery_lease_s * 1_000_000)
        due = and_(
            D.c.status == PENDING,
            D.c.next_attempt_at_us <= now,
            or_(D.c.lease_until_us.is_(None), D.c.lease_until_us < now),
            D.c.webhook_id.in_(select(W.c.id).where(W.c.active.is_(True))),
        )
        # Most rounds find nothing due: a read says so without taking a turn as the database's writer.
        with self.engine.connect() as conn:
            if conn.execute(select(D.c.id).where(due).limit(1)).first() is None:
                return []
        query = select(D.c.id).where(due).order_by(D.c.next_attempt_at_us, D.c.id)
        query = query.limit(self.settings.delivery_batch_max)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with write_transaction(self.engine) as conn:
            ids = [int(r[0]) for r in conn.execute(query)]
            if not ids:
                return []
            conn.execute(update(D).where(D.c.id.in_(ids)).values(lease_owner=owner, lease_until_us=now + lease_us))
            rows = conn.execute(
                select(
                    D.c.id.label("delivery_id"),
                    D.c.attempts,
                    W.c.id.label("webhook_id"),
                    W.c.url,
                    W.c.secret,
                    E.c.id.label("event_id"),
                    E.c.type,
                    E.c.occurred_at_us,
                    E.c.client_id,
                    E.c.subject,
                    E.c.payload,
                )
                .select_from(D.join(W, W.c.id == D.c.webhook_id).join(E, E.c.id == D.c.event_id))
                .where(D.c.id.in_(ids))
                .order_by(D.c.next_attempt_at_us, D.c.id)
            ).all()
        claimed = []
        for r in rows:
            event = Event(
                id=int(r.event_id),
                type=r.type,
                occurred_at_us=int(r.occurred_at_us),
                client_id=r.client_id,
                subject=r.subject,
                payload=json.loads(r.payload),
            )
            claimed.append(_Claimed(int(r.delivery_id), int(r.attempts), r.webhook_id, r.url, r.secret, event))
        return claimed

    def deliver_due(self, owner: str) -> int:
        """Send the due deliveries this worker can claim, within one lease; how many attempts were made."""
        claimed = self._claim(owner)
        if not claimed:
            return 0
        timeout_s = self.settings.delivery_timeout_s
        # An attempt started within the budget ends (connect, write, read: each within the timeout)
        # before the claim runs out, so no other worker sends the same delivery meanwhile.
        budget_s = self.settings.delivery_lease_s - 3 * timeout_s
        started = self.monotonic()
        sent = 0
        with ExitStack() as stack:
            pools: dict[str, httpx.Client] = {}
            for item in claimed:
                if self.monotonic() - started > budget_s:
                    break

                def pool(name: str) -> httpx.Client:
                    if name not in pools:
                        pools[name] = stack.enter_context(
                            httpx.Client(
                                timeout=httpx.Timeout(timeout_s),
                                follow_redirects=False,
                                trust_env=False,
                                verify=tls_context(trust_env=False),
                            )
                        )
                    return pools[name]

                code, error, duration_ms = self._send(pool, item)
                self._record(owner, item, code, error, duration_ms)
                sent += 1
        if sent < len(claimed):
            self._unclaim(owner, [c.delivery_id for c in claimed[sent:]])
        return sent

    def sign(self, secret: str, item: _Claimed, now_us: int) -> tuple[bytes, dict[str, str]]:
        """The body and the Standard Webhooks headers of one attempt."""
        body = canonical(item.event.view())
        msg_id = message_id(item.event.id)
        seconds = now_us // 1_000_000
        signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(seconds, tz=UTC), body)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": signature,
        }
        return body.encode(), headers

    def _send(self, pool: Callable[[str], httpx.Client], item: _Claimed) -> tuple[int | None, str | None, int]:
        body, headers = self.sign(item.secret, item, self.clock())
        started = self.monotonic()
        code: int | None = None
        error: str | None = None
        try:
            target = Target.of(item.url, private_targets=self.settings.private_targets, resolve=self.resolve)
            with pool(target.pool).stream(
                "POST", target.url, content=body, headers={**headers, **target.headers}, extensions=target.extensions
            ) as response:
                code = response.status_code
        except TargetRefused as exc:
            error = f"refused: {exc}"[:ERROR_LENGTH_MAX]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH_MAX]
        else:
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        duration_ms = int((self.monotonic() - started) * 1000)
        if error:
            log.info("webhook attempt failed webhook=%s delivery=%d error=%s", item.webhook_id, item.delivery_id, error)
        return code, error, duration_ms

    def _record(self, owner: str, item: _Claimed, code: int | None, error: str | None, duration_ms: int) -> None:
        now = self.clock()
        mine = and_(D.c.id == item.delivery_id, D.c.lease_owner == owner, D.c.status == PENDING)
        with write_transaction(self.engine) as conn:
            conn.execute(
                A.insert().values(
                    delivery_id=item.delivery_id,
                    at_us=now,
                    kind="attempt",
                    status_code=code,
                    error=error,
                    duration_ms=min(duration_ms, 2**31 - 1),
                    owner=owner,
                )
            )
            free = {"lease_owner": None, "lease_until_us": None, "last_status_code": code, "updated_at_us": now}
            if error is None:
                done = conn.execute(
                    update(D).where(mine).values(status=SUCCEEDED, attempts=item.attempts + 1, last_error=None, **free)
                )
                if done.rowcount == 1:
                    # The receiver answers again: what waits for a retry goes now.
                    conn.execute(
                        update(D)
                        .where(
                            D.c.webhook_id == item.webhook_id,
                            D.c.status == PENDING,
                            D.c.attempts > 0,
                            D.c.next_attempt_at_us > now,
                        )
                        .values(next_attempt_at_us=now)
                    )
                return
            attempts = item.attempts + 1
            schedule = self.settings.retry_schedule_s
            if attempts >= len(schedule):
                values: dict[str, Any] = {"status": FAILED}
                log.warning(
                    "webhook delivery failed for good webhook=%s delivery=%d attempts=%d error=%s",
                    item.webhook_id,
                    item.delivery_id,
                    attempts,
                    error,
                )
            else:
                values = {"next_attempt_at_us": now + int(schedule[attempts] * 1_000_000)}
            conn.execute(
                update(D)
                .where(mine, D.c.attempts == item.attempts)
                .values(attempts=attempts, last_error=error, **free, **values)
            )

    def _unclaim(self, owner: str, delivery_ids: builtins.list[int]) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(D)
                .where(D.c.id.in_(delivery_ids), D.c.lease_owner == owner)
                .values(lease_owner=None, lease_until_us=None)
            )

    def release(self, owner: str) -> None:
        """Give back this worker's claims (it stops): another worker sends them at once."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(D)
                .where(D.c.lease_owner == owner, D.c.status == PENDING)
                .values(lease_owner=None, lease_until_us=None)
            )

    def due(self) -> bool:
        """Whether a delivery is due now (or a subscription has events to fan out)."""
        now = self.clock()
        head = self.events.head()
        with self.engine.connect() as conn:
            waiting = conn.execute(
                select(D.c.id)
                .where(
                    D.c.status == PENDING,
                    D.c.next_attempt_at_us <= now,
                    or_(D.c.lease_until_us.is_(None), D.c.lease_until_us < now),
                )
                .limit(1)
            ).first()
            behind = conn.execute(
                select(W.c.id).where(W.c.active.is_(True), W.c.after_event_id < head).limit(1)
            ).first()
        return waiting is not None or behind is not None
