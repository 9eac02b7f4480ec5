"""Named leases: at most one live holder of a piece of work at a time, on SQLite and PostgreSQL.

A lease is taken (or renewed by its holder) for `lease_s`; another owner gets it only
once it has run out. Work that must not run twice at once (a listener's next range,
the rules engine, the nonce repair of a network) takes its lease first, and checks it
again in the transaction that commits the work.

A worker gives its leases back when it stops, so that another takes over at once; the
leases of a worker process that died on this host are freed when the next one starts
(as its operations' claims are); any other lease simply runs out after `lease_s`.
"""

from __future__ import annotations

import socket
import time

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from andchain.db import write_transaction
from andchain.devtools.processes import pid_alive
from andchain.ledger.model import Clock
from andchain.ops import schema

L = schema.leases


def acquire(engine: Engine, name: str, owner: str, lease_s: float, clock: Clock) -> bool:
    """Take or renew the lease `name` for `owner`; False when another live holder has it."""
    now = clock()
    until = now + int(lease_s * 1_000_000)
    try:
        with write_transaction(engine) as conn:
            query = select(L.c.owner, L.c.until_us).where(L.c.name == name)
            if engine.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(L.insert().values(name=name, owner=owner, until_us=until, updated_at_us=now))
                return True
            if row.owner != owner and int(row.until_us) >= now:
                return False
            conn.execute(update(L).where(L.c.name == name).values(owner=owner, until_us=until, updated_at_us=now))
            return True
    except IntegrityError:  # another process inserted it first
        return False


def held(conn: Connection, name: str, owner: str, now_us: int) -> bool:
    """Inside a write transaction: whether `owner` still holds `name` (locks the row on PostgreSQL)."""
    query = select(L.c.owner, L.c.until_us).where(L.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return row is not None and row.owner == owner and int(row.until_us) >= now_us


def release(engine: Engine, name: str, owner: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(update(L).where(L.c.name == name, L.c.owner == owner).values(until_us=0))


def release_dead(engine: Engine) -> int:
    """Free the live leases of worker processes on this host that no longer exist (after a crash)."""
    host = socket.gethostname()
    freed = 0
    with write_transaction(engine) as conn:
        for row in conn.execute(select(L.c.name, L.c.owner).where(L.c.until_us > 0)).all():
            name, owner = str(row.name), str(row.owner)
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
                freed += conn.execute(update(L).where(L.c.name == name, L.c.owner == owner).values(until_us=0)).rowcount
    return freed


class Lease:
    """One named lease for one owner, as the listener (and any part) takes it.

    By default every `acquire` renews it, so that the work that follows has the whole lease to run in.
    With `renew_at_half`, for work that checks the lease again in each transaction that commits it
    (`held`, as the listener's deliveries do), its holder renews it only once half of it has run, by the
    lease's clock or by this process's monotonic one: until then no other owner can have it, and asking
    costs no write transaction. A lease found lost (`held`), given back or `forget`-ten is asked for again.
    """

    def __init__(
        self, engine: Engine, name: str, owner: str, lease_s: float, clock: Clock, *, renew_at_half: bool = False
    ) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner
        self.lease_s = lease_s
        self.clock = clock
        self.renew_at_half = renew_at_half
        self._renew_at: tuple[int, float] | None = None  # while held: (lease clock, monotonic) to renew at

    def acquire(self) -> bool:
        now = self.clock()
        if self._renew_at is not None and now < self._renew_at[0] and time.monotonic() < self._renew_at[1]:
            return True
        self._renew_at = None
        mono = time.monotonic()
        if not acquire(self.engine, self.name, self.owner, self.lease_s, self.clock):
            return False
        if self.renew_at_half:
            self._renew_at = (now + int(self.lease_s * 1_000_000) // 2, mono + self.lease_s / 2)
        return True

    def held(self, conn: Connection) -> bool:
        still = held(conn, self.name, self.owner, self.clock())
        if not still:
            self._renew_at = None
        return still

    def forget(self) -> None:
        """Ask the database again at the next `acquire` (the lease may have been lost)."""
        self._renew_at = None

    def release(self) -> None:
        self._renew_at = None
        release(self.engine, self.name, self.owner)
