"""Request ids (echoed, logged, carried into operations), JSON logs without secrets, /metrics."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Request
from prometheus_client.parser import text_string_to_metric_families

from andchain import metrics as platform_metrics
from andchain.logs import JsonFormatter, RequestIdFilter, configure_logging, request_id, with_request_id
from andchain.ops import Operations
from andchain.ops import schema as ops_schema
from andchain.reconcile import Check, Report

BEARER = "ak_live_7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e"
BODY_MARKER = "body-marker-5d1f0e9a"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG and above while the test runs, as the JSON lines `serve` writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# ------------------------------------------------------------------ request ids


def test_every_answer_carries_a_new_request_id_unless_the_caller_sent_a_usable_one(client):
    first, second = client.get("/v1/accounts"), client.get("/v1/accounts")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    given = client.get("/v1/accounts", headers={"X-Request-Id": "lb-2024.01:abc_DEF-9"})
    assert given.headers["X-Request-Id"] == "lb-2024.01:abc_DEF-9"
    for unusable in (b"has space", b"x" * 129, b'quote"d', "é".encode(), b"line\tbreak"):
        answer = client.get("/v1/accounts", headers={"X-Request-Id": unusable})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-Id"]), unusable


def test_an_operation_created_by_a_request_stores_its_request_id(client):
    ctx = client.app.state.context

    @client.app.post("/test/operations")
    def create_operation(request: Request) -> dict[str, Any]:
        ops = Operations(ctx.engine, clock=ctx.clock, settings=ctx.settings.ops)
        op, _ = ops.create("mint", request.headers["Idempotency-Key"], {"amount_minor": 100}, state={"leg": 1})
        return {"id": op.id}

    response = client.post("/test/operations", headers={"Idempotency-Key": "op-1", "X-Request-Id": "req-42"})
    assert response.status_code == 200, response.text
    stored = Operations(ctx.engine, clock=ctx.clock).get(response.json()["id"])
    assert stored.state == {"leg": 1, "request_id": "req-42"}


def test_outside_a_request_no_request_id_is_added():
    assert request_id.get() is None
    assert with_request_id({"leg": 1}) == {"leg": 1}
    token = request_id.set("req-1")
    try:
        assert with_request_id({}) == {"request_id": "req-1"}
        assert with_request_id({"request_id": "first"}) == {"request_id": "first"}  # never overwritten
    finally:
        request_id.reset(token)


# ------------------------------------------------------------------------ logs


def test_the_access_log_is_one_json_line_with_the_request_id_route_and_status(client, log_lines):
    response = client.get("/v1/accounts/clients:acme:usd:dda", headers={"X-Request-Id": "req-7"})
    assert response.status_code == 404
    access = [e for e in entries(log_lines) if e["logger"] == "andchain.api.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-7"
    assert line["route"] == "/v1/accounts/{ref}"
    assert line["path"] == "/v1/accounts/clients:acme:usd:dda"
    assert line["status"] == 404 and line["method"] == "GET"
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["ts"].endswith("+00:00")


def test_a_request_with_a_bearer_key_and_a_body_logs_neither(client, log_lines):
    @client.app.get("/test/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    bearer = client.headers["Authorization"].removeprefix("Bearer ")  # a real key, so the requests get through
    headers = {"Authorization": f"Bearer {bearer}", "Idempotency-Key": "secret-test"}
    body = {"name": "bank:usd:cash", "asset": "USD", "metadata": {"note": BODY_MARKER}}
    assert client.post("/v1/accounts", json=body, headers=headers).status_code == 201
    assert client.post("/v1/accounts", json={**body, "asset": 5}, headers=headers).status_code == 422
    assert client.get("/test/boom", headers=headers).status_code == 500  # a traceback is logged
    text = log_lines.getvalue()
    assert entries(log_lines), "the requests were logged"
    assert any("Traceback" in e.get("exc", "") for e in entries(log_lines))
    assert bearer not in text and bearer.split("_", 2)[-1] not in text  # the secret (ak_<id>_<secret>; it may hold "_")
    assert BODY_MARKER not in text


def test_secrets_given_to_a_log_line_are_redacted():
    record = logging.makeLogRecord(
        {
            "name": "andchain.test",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "calling with Authorization: Bearer %s",
            "args": (BEARER,),
            "api_key": BEARER,
            "webhook_secret": "whsec_123",
            "network": "internal",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert BEARER not in json.dumps(line) and "whsec_123" not in json.dumps(line)
    assert line["api_key"] == line["webhook_secret"] == "[redacted]"
    assert line["network"] == "internal"
    assert line["message"] == "calling with Authorization: Bearer [redacted]"


def test_configure_logging_writes_json_lines_with_the_request_id():
    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    saved = (list(root.handlers), root.level, alembic.level)
    stream = io.StringIO()
    try:
        root.setLevel(logging.WARNING)
        configure_logging("info", stream=stream)
        token = request_id.set("req-9")
        try:
            logging.getLogger("andchain.test").info("minted", extra={"network": "internal"})
            logging.getLogger("uvicorn.error").info("started", extra={"color_message": "\x1b[1mstarted\x1b[0m"})
        finally:
            request_id.reset(token)
        logging.getLogger("andchain.test").debug("not at this level")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        alembic.setLevel(saved[2])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["message"]) for e in lines] == [("andchain.test", "minted"), ("uvicorn.error", "started")]
    assert lines[0]["request_id"] == "req-9" and lines[0]["network"] == "internal"
    assert "color_message" not in lines[1]


# --------------------------------------------------------------------- metrics


def test_requests_are_counted_by_route_template_and_status_never_by_raw_path(client):
    for name in ("a", "b", "c"):
        assert client.get(f"/v1/accounts/{name}").status_code == 404
    client.get("/v1/accounts")
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    client.get("/openapi.json")
    client.get("/static/docs/swagger-ui.css")
    samples = scrape(client)
    requests = {labels: value for (name, labels), value in samples.items() if name == "andchain_http_requests_total"}
    assert requests[(("method", "GET"), ("route", "/v1/accounts/{ref}"), ("status", "404"))] == 3
    assert requests[(("method", "GET"), ("route", "/v1/accounts"), ("status", "200"))] == 1
    assert requests[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 2
    assert requests[(("method", "GET"), ("route", "/openapi.json"), ("status", "200"))] == 1
    assert requests[(("method", "GET"), ("route", "/static/docs/{path}"), ("status", "200"))] == 1
    assert {dict(labels)["route"] for labels in requests} == {
        "/v1/accounts/{ref}",
        "/v1/accounts",
        "unmatched",
        "/openapi.json",
        "/static/docs/{path}",
    }
    count = samples[
        ("andchain_http_request_duration_seconds_count", (("method", "GET"), ("route", "/v1/accounts/{ref}")))
    ]
    assert count == 3


def test_operations_by_kind_and_status_and_listener_lag_are_read_at_scrape_time(client):
    ctx = client.app.state.context
    ops = Operations(ctx.engine, clock=ctx.clock, settings=ctx.settings.ops)
    for i in range(2):
        ops.create("mint", f"mint-{i}", {"i": i})
    ops.create("redeem", "redeem-0", {"i": 0})
    with ctx.engine.begin() as conn:
        now = ctx.clock()
        detail = {"rounds": 3, "lag_blocks": {"internal": 7, "base": None}, "parts": {}}
        conn.execute(
            ops_schema.workers.insert().values(
                owner="host:1", started_at_us=now, beat_at_us=now, detail=json.dumps(detail)
            )
        )
    samples = scrape(client)
    assert samples[("andchain_database_up", ())] == 1
    assert samples[("andchain_operations", (("kind", "mint"), ("status", "received")))] == 2
    assert samples[("andchain_operations", (("kind", "redeem"), ("status", "received")))] == 1
    assert samples[("andchain_listener_lag_blocks", (("network", "internal"),))] == 7
    assert ("andchain_listener_lag_blocks", (("network", "base"),)) not in samples  # unknown is not 0
    assert samples[("andchain_workers_alive", ())] == 1


def test_reconcile_breaks_are_reported_once_a_reconciliation_ran(client, monkeypatch, tmp_path):
    monkeypatch.setattr(platform_metrics, "_last_reconcile", None)
    assert not any(name.startswith("andchain_reconcile") for name, _ in scrape(client))
    report = Report(
        checks=[
            Check("ledger", "debits == credits", "no break", "no break", True),
            Check("supply", "USDD on internal", "100.00", "90.00", False),
            Check("supply", "USDD on base", "5.00", "5.00", True),
        ]
    )
    platform_metrics.record_reconcile(report)
    samples = scrape(client)
    assert samples[("andchain_reconcile_breaks", (("check", "supply"),))] == 1
    assert samples[("andchain_reconcile_breaks", (("check", "ledger"),))] == 0
    assert samples[("andchain_reconcile_checks", ())] == 3
    assert samples[("andchain_reconcile_last_run_timestamp_seconds", ())] > 0
    # `andchain reconcile --metrics-file`: the same gauges, for node_exporter's textfile collector.
    path = tmp_path / "andchain_reconcile.prom"
    platform_metrics.write_reconcile_metrics(report, path)
    written = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert written[("andchain_reconcile_breaks", (("check", "supply"),))] == 1
    assert written[("andchain_reconcile_checks", ())] == 3
