"""A real HTTP receiver for webhooks (a small server in a thread), and helpers to make events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine

from andchain.config import EventsSettings
from andchain.db import write_transaction
from andchain.devtools.postgres import free_port
from andchain.events import NewEvent
from andchain.events.store import append_with_ids

# The receivers here listen on 127.0.0.1 over plain http: what a development machine allows.
LOCAL = {"allow_http": True, "private_targets": True}


def local(**events: object) -> EventsSettings:
    """Event settings that accept the local receivers, with `events` on top."""
    return EventsSettings(**{**LOCAL, **events})


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: up (answering `status`) or down (connection refused)."""

    port: int = field(default_factory=free_port)
    status: int = 204
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                msg = self.headers.get("webhook-id", "")
                with receiver._lock:
                    receiver.in_flight[msg] = receiver.in_flight.get(msg, 0) + 1
                    receiver.most_in_flight[msg] = max(receiver.most_in_flight.get(msg, 0), receiver.in_flight[msg])
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                status = receiver.status
                with receiver._lock:
                    receiver.in_flight[msg] -= 1
                    receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    def delivered(self) -> list[Received]:
        """The requests it answered with a 2xx."""
        return [r for r in self.requests if 200 <= r.answered < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def down_receiver() -> Iterator[Receiver]:
    """A receiver that is not listening yet: its port refuses connections until start()."""
    server = Receiver()
    yield server
    server.stop()


def emit(engine: Engine, clock: Callable[[], int], *events: NewEvent) -> list[int]:
    with write_transaction(engine) as conn:
        return append_with_ids(conn, list(events), clock())


def alert(text: str, client_id: str | None = None) -> NewEvent:
    return NewEvent("alert", text, {"message": text}, client_id)


class FrozenDatetime(datetime):
    """standardwebhooks checks a timestamp against datetime.now(): under a simulated clock, that clock's now."""

    clock: Callable[[], int] = staticmethod(lambda: time.time_ns() // 1000)

    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
        return datetime.fromtimestamp(cls.clock() / 1_000_000, tz=tz or UTC)
