"""/v1/events, its server-sent stream (a real uvicorn server), and /v1/webhooks over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from andchain.api import create_app
from andchain.config import Settings
from andchain.context import Context
from andchain.devtools.postgres import free_port
from andchain.events.webhooks import Webhooks
from tests.events.conftest import LOCAL, alert, emit, local

PROBLEM = "application/problem+json"


def make_context(engine, clock, tmp_path, **events) -> Context:
    url = str(engine.url.render_as_string(hide_password=False))
    ctx = Context(Settings(data_dir=tmp_path, database_url=url, events={**LOCAL, **events}), clock=clock)
    ctx.__dict__["engine"] = engine
    return ctx


def bearer(ctx: Context, role: str = "admin", client_id: str | None = None) -> dict[str, str]:
    _, secret = ctx.api_keys.create(role, client_id=client_id, label=f"test {role}")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(engine, clock, tmp_path) -> Iterator[TestClient]:
    ctx = make_context(engine, clock, tmp_path)
    with TestClient(create_app(ctx), base_url="http://localhost", raise_server_exceptions=False) as client:
        client.headers.update(bearer(ctx))
        yield client


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def test_events_are_read_with_a_cursor_and_filtered_by_type(api, engine, clock):
    emit(engine, clock, *(alert(f"a{i}") for i in range(5)))
    first = api.get("/v1/events", params={"limit": 3}).json()
    assert [e["subject"] for e in first["data"]] == ["a0", "a1", "a2"] and first["has_more"] is True
    rest = api.get("/v1/events", params={"after": first["next_after"]}).json()
    assert [e["subject"] for e in rest["data"]] == ["a3", "a4"] and rest["has_more"] is False
    assert api.get("/v1/events", params={"after": rest["next_after"]}).json() == {
        "data": [],
        "next_after": rest["next_after"],
        "has_more": False,
    }
    event = rest["data"][0]
    assert set(event) == {"id", "type", "occurred_at", "client_id", "subject", "data"}
    assert api.get("/v1/events", params={"type": "operation.*"}).json()["data"] == []
    refused = api.get("/v1/events", params={"type": "no.such"})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "unknown_event_type"
    for bad in ({"after": -1}, {"after": 2**63}, {"limit": 0}, {"limit": 1001}):
        assert api.get("/v1/events", params=bad).status_code == 422


def test_a_client_restricted_caller_sees_only_its_own_events_and_webhooks(api, engine, clock):
    emit(engine, clock, alert("acme's", "acme"), alert("globex's", "globex"), alert("the bank's"))
    bank_hook = api.post("/v1/webhooks", json={"url": "https://bank.example/hooks"}, headers=key("h1")).json()
    bank_key = dict(api.headers)
    api.headers.update(bearer(api.app.state.context, "client", "acme"))
    try:
        assert [e["subject"] for e in api.get("/v1/events").json()["data"]] == ["acme's"]
        assert api.get("/v1/webhooks").json()["data"] == []
        assert api.get(f"/v1/webhooks/{bank_hook['id']}").status_code == 404
        assert api.delete(f"/v1/webhooks/{bank_hook['id']}").status_code == 404
        other = api.post("/v1/webhooks", json={"url": "https://a.example/h", "client_id": "globex"}, headers=key("h2"))
        assert (other.status_code, other.json()["code"]) == (403, "forbidden")
        own = api.post("/v1/webhooks", json={"url": "https://a.example/h"}, headers=key("h3"))
        assert (own.status_code, own.json()["client_id"]) == (201, "acme")
    finally:
        api.headers.update(bank_key)
    assert api.get(f"/v1/webhooks/{bank_hook['id']}").json()["active"] is True


def test_a_webhook_is_created_once_per_key_its_secret_shown_only_then(api):
    body = {"url": "https://treasury.example/hooks", "types": ["operation.*", "payment.received"], "description": "t"}
    created = api.post("/v1/webhooks", json=body, headers=key("create-1"))
    assert created.status_code == 201
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["types"] == ["payment.received", "operation.*"]
    again = api.post("/v1/webhooks", json=body, headers=key("create-1"))
    assert again.json() == hook and again.headers["Idempotent-Replayed"] == "true"
    reused = api.post("/v1/webhooks", json={**body, "url": "https://x.example"}, headers=key("create-1"))
    assert reused.json()["code"] == "idempotency_key_reused"
    assert api.post("/v1/webhooks", json=body).json()["code"] == "idempotency_key_required"
    listed = api.get("/v1/webhooks").json()
    assert [h["id"] for h in listed["data"]] == [hook["id"]] and "secret" not in listed["data"][0]
    assert "secret" not in api.get(f"/v1/webhooks/{hook['id']}").json()
    for bad, code in (
        ({"url": "ftp://x.example"}, "invalid_url"),
        ({"url": "https://x.example", "types": ["nope"]}, "unknown_event_type"),
        ({"url": "https://x.example", "extra": 1}, "invalid_request"),
        ({"url": 5}, "invalid_request"),
    ):
        r = api.post("/v1/webhooks", json=bad, headers=key(f"bad-{code}-{len(str(bad))}"))
        assert (r.status_code, r.json()["code"]) == (422, code), bad
    gone = api.delete(f"/v1/webhooks/{hook['id']}")
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert api.delete(f"/v1/webhooks/{hook['id']}").json()["active"] is False
    assert api.get("/v1/webhooks/wh_nope").json()["code"] == "webhook_not_found"
    assert api.get("/v1/webhooks", params={"cursor": "garbage!"}).json()["code"] == "invalid_cursor"


def test_deliveries_are_listed_with_their_log_and_replayed(api, engine, clock, receiver):
    hook = api.post("/v1/webhooks", json={"url": receiver.url}, headers=key("c")).json()
    emit(engine, clock, alert("one"), alert("two"))
    hooks = Webhooks(engine, local(), clock=clock)
    hooks.fan_out()
    hooks.deliver_due("w1")
    page = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
    assert [d["status"] for d in page["data"]] == ["succeeded", "succeeded"]
    first = page["data"][0]
    assert first["message_id"] == f"evt_{first['event_id']}" and first["log"][0]["status_code"] == 204
    paged = api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 1}).json()
    rest = api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"cursor": paged["next_cursor"]}).json()
    assert [d["id"] for d in paged["data"] + rest["data"]] == [d["id"] for d in page["data"]]
    replay = api.post(f"/v1/webhooks/{hook['id']}/deliveries/{first['id']}/replay", headers=key("r1"))
    assert replay.status_code == 200 and replay.json()["status"] == "pending"
    assert api.post(f"/v1/webhooks/{hook['id']}/deliveries/{first['id']}/replay", headers=key("r1")).headers[
        "Idempotent-Replayed"
    ]
    missing = api.post(f"/v1/webhooks/{hook['id']}/deliveries/999999/replay", headers=key("r2"))
    assert (missing.status_code, missing.json()["code"]) == (404, "delivery_not_found")
    since = api.post(f"/v1/webhooks/{hook['id']}/replay", params={"after": 0}, headers=key("r3"))
    assert since.json()["queued"] == 2 and since.json()["has_more"] is False
    hooks.deliver_due("w1")
    assert len(receiver.delivered()) == 4
    assert api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "pending"}).json()["data"] == []
    assert api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "nope"}).status_code == 422


# ---------------------------------------------------------------- the stream


@contextmanager
def serving(ctx: Context) -> Iterator[str]:
    """The API on a real uvicorn server in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def read_stream(
    url: str, *, headers: dict[str, str] | None = None, until: Callable[[list[dict]], bool]
) -> tuple[list[dict], list[str]]:
    """Messages (id, event, data) and comment lines of a stream, read until `until(messages)` or it ends."""
    messages: list[dict] = []
    comments: list[str] = []
    current: dict = {}
    with httpx.stream("GET", url, headers=headers or {}, timeout=httpx.Timeout(10.0)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif not line:
                if current:
                    messages.append(current)
                    current = {}
                    if until(messages):
                        break
            else:
                field, _, value = line.partition(":")
                current[field] = value.strip()
    return messages, comments


def test_the_stream_sends_events_as_they_happen_and_resumes_from_last_event_id(engine, clock, tmp_path):
    ctx = make_context(engine, clock, tmp_path, stream_poll_s=0.05, stream_heartbeat_s=0.2, stream_max_s=3)
    emit(engine, clock, alert("old"))
    auth = bearer(ctx, "auditor")
    with serving(ctx) as base:
        got: list[dict] = []

        def first_two(messages: list[dict]) -> bool:
            if len([m for m in messages if "id" in m]) == 1 and len(got) == 0:
                got.append(messages[-1])
                emit(engine, clock, alert("new 1"), alert("new 2", "acme"))  # while the stream is open
            return len([m for m in messages if "id" in m]) >= 3

        messages, _ = read_stream(f"{base}/v1/events/stream?after=0", headers=auth, until=first_two)
        events = [m for m in messages if "id" in m]
        assert [m["event"] for m in events] == ["alert"] * 3
        assert [int(m["id"]) for m in events] == [1, 2, 3]
        # Reconnecting with the last id it saw, a client gets only what came after.
        emit(engine, clock, alert("newest"))
        resumed, _ = read_stream(
            f"{base}/v1/events/stream?after=0",
            headers={**auth, "Last-Event-ID": events[1]["id"]},
            until=lambda ms: len([m for m in ms if "id" in m]) >= 2,
        )
        assert [int(m["id"]) for m in resumed if "id" in m] == [3, 4]
        # Without a position it starts from now; heartbeats keep it alive; it ends by itself (stream_max_s).
        quiet, comments = read_stream(f"{base}/v1/events/stream", headers=auth, until=lambda ms: False)
        assert [m for m in quiet if "id" in m] == []
        assert any(c.startswith(": ping") for c in comments)
        bad = httpx.get(f"{base}/v1/events/stream", headers={**auth, "Last-Event-ID": "x1"})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_last_event_id")
        typo = httpx.get(f"{base}/v1/events/stream", headers=auth, params={"type": "nope"})
        assert (typo.status_code, typo.json()["code"]) == (422, "unknown_event_type")


def test_a_stream_ends_when_its_key_is_revoked(engine, clock, tmp_path):
    ctx = make_context(engine, clock, tmp_path, stream_poll_s=0.05, stream_heartbeat_s=0.2, stream_max_s=20)
    key, secret = ctx.api_keys.create("auditor", label="revoked while streaming")
    emit(engine, clock, alert("before"))
    with serving(ctx) as base:

        def revoke_after_the_first(messages: list[dict]) -> bool:
            if len([m for m in messages if "id" in m]) == 1:
                ctx.api_keys.revoke(key.id)
                emit(engine, clock, alert("after the revocation"))
            return False  # read until the server ends the stream

        messages, _ = read_stream(
            f"{base}/v1/events/stream?after=0",
            headers={"Authorization": f"Bearer {secret}"},
            until=revoke_after_the_first,
        )
    assert [m["id"] for m in messages if "id" in m] == ["1"]
