"""Webhook deliveries against a real HTTP receiver: signed, at least once, retried on the Standard Webhooks
schedule, logged, replayed, and never sent by two workers at once."""

from __future__ import annotations

import json
import threading
import time

import pytest
import standardwebhooks.webhooks
from sqlalchemy import select
from standardwebhooks import Webhook

from andchain.config import STANDARD_WEBHOOK_SCHEDULE_S, EventsSettings
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import EventLog
from andchain.events import schema as event_schema
from andchain.events.webhooks import ClientMismatch, Webhooks
from tests.conftest import FakeClock
from tests.events.conftest import FrozenDatetime, Receiver, alert, emit, local


def now_clock() -> FakeClock:
    """A simulated clock that starts at the real time, so that signatures verify with the real library."""
    return FakeClock(time.time_ns() // 1000)


def drive(hooks: Webhooks, owner: str = "w1") -> tuple[int, int]:
    return hooks.fan_out(), hooks.deliver_due(owner)


def test_a_delivery_is_signed_so_that_standardwebhooks_verifies_it(engine, receiver):
    clock = now_clock()
    hooks = Webhooks(engine, local(), clock=clock)
    sub, secret = hooks.create(receiver.url, description="treasury system")
    assert secret.startswith("whsec_") and "secret" not in sub.view()
    (event_id,) = emit(engine, clock, alert("gas wallet low on base"))
    assert drive(hooks) == (1, 1)
    (request,) = receiver.requests
    event = EventLog(engine).read().events[0]
    assert Webhook(secret).verify(request.body, request.headers) == json.loads(json.dumps(event.view()))
    assert request.headers["webhook-id"] == f"evt_{event_id}"
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        Webhook(hooks.create(receiver.url)[1]).verify(request.body, request.headers)  # another secret
    (delivery,) = hooks.deliveries(sub.id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 204)
    assert [(a.kind, a.status_code) for a in delivery.log] == [("attempt", 204)]


def test_a_subscription_receives_what_happens_after_it_of_its_client_and_types(engine, clock, receiver):
    hooks = Webhooks(engine, local(), clock=clock)
    emit(engine, clock, alert("before any subscription"))
    acme, _ = hooks.create(receiver.url, subscriber="acme", types=["alert.*"])
    bank, _ = hooks.create(receiver.url, types=["operation.succeeded"])
    emit(engine, clock, alert("for acme", "acme"), alert("for globex", "globex"), alert("for the bank"))
    drive(hooks)
    assert [d.event_id for d in hooks.deliveries(acme.id)] == [2]
    assert hooks.deliveries(bank.id) == []  # no operation succeeded
    # A client restricted to its own sees only its subscriptions and cannot subscribe for another.
    assert [s.id for s in hooks.list(client_id="acme")] == [acme.id]
    with pytest.raises(NotFound):
        hooks.get(bank.id, client_id="acme")
    with pytest.raises(ClientMismatch):
        hooks.create(receiver.url, subscriber="globex", client_id="acme")
    assert hooks.create(receiver.url, client_id="acme")[0].client_id == "acme"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "must start with"),
        ("https://user:pw@example.com/x", "credentials"),
        ("https:///x", "no host"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com:99999/x", "cannot be read"),
    ],
)
def test_an_endpoint_that_is_not_a_plain_web_address_is_refused(engine, clock, url, why):
    with pytest.raises(DomainError) as refused:
        Webhooks(engine, local(), clock=clock).create(url)
    assert refused.value.code == "invalid_url" and why in refused.value.message


def test_plain_http_is_refused_when_the_settings_say_so(engine, clock):
    with pytest.raises(DomainError, match="https://"):
        Webhooks(engine, EventsSettings(allow_http=False), clock=clock).create("http://example.com/hooks")


def test_a_failing_receiver_is_retried_on_the_standard_schedule_then_the_delivery_fails(engine, receiver, monkeypatch):
    import andchain.events.webhooks as module

    writes: list[object] = []  # the write transactions the deliveries took
    write_transaction = module.write_transaction
    monkeypatch.setattr(module, "write_transaction", lambda e: writes.append(e) or write_transaction(e))
    clock = now_clock()
    receiver.status = 500
    hooks = Webhooks(engine, local(), clock=clock)
    assert hooks.settings.retry_schedule_s == list(STANDARD_WEBHOOK_SCHEDULE_S)
    sub, _ = hooks.create(receiver.url)
    emit(engine, clock, alert("break"))
    drive(hooks)
    waits = []
    for _ in range(len(STANDARD_WEBHOOK_SCHEDULE_S)):
        (delivery,) = hooks.deliveries(sub.id)
        if delivery.status != "pending":
            break
        wait_us = delivery.next_attempt_at_us - clock()
        waits.append(wait_us / 1_000_000)
        clock.advance(wait_us / 1_000_000 - 0.5)
        taken = len(writes)
        assert hooks.deliver_due("w1") == 0  # not due yet
        assert len(writes) == taken  # and no turn at the writer to find that out
        clock.advance(0.5)
        assert hooks.deliver_due("w1") == 1
    assert waits == [0.0, *STANDARD_WEBHOOK_SCHEDULE_S[1:]][1:]
    (delivery,) = hooks.deliveries(sub.id)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 10, "HTTP 500")
    assert len(receiver.requests) == 10 and len(delivery.log) == 10
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}
    clock.advance(7 * 86_400)
    assert drive(hooks) == (0, 0)  # failed for good: nothing more is sent


def test_a_receiver_down_for_an_hour_loses_nothing_and_gets_each_event_once_when_back(
    engine, down_receiver: Receiver, monkeypatch
):
    clock = now_clock()
    hooks = Webhooks(engine, local(), clock=clock)
    _, secret = hooks.create(down_receiver.url)
    emitted = []
    # An hour in steps of 30 s: an event a minute; the receiver refuses connections for 20 minutes,
    # then answers 500 for 40.
    for step in range(120):
        if step % 2 == 0:
            emitted += emit(engine, clock, alert(f"event {step // 2}", "acme" if step % 4 else None))
        if step == 40:
            down_receiver.status = 500
            down_receiver.start()
        drive(hooks)
        clock.advance(30)
    assert down_receiver.delivered() == []
    refused_or_failed = len(down_receiver.requests)
    assert refused_or_failed > 0
    down_receiver.status = 204
    for _ in range(60):  # back: each delivery's next retry comes within minutes, and brings the rest along
        drive(hooks)
        if len(down_receiver.delivered()) == len(emitted):
            break
        clock.advance(30)
    delivered = down_receiver.delivered()
    assert sorted(r.headers["webhook-id"] for r in delivered) == sorted(f"evt_{i}" for i in emitted)
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", FrozenDatetime)
    for request in down_receiver.requests:
        # Verified as the receiver did when it arrived: at the simulated time it was sent.
        sent_us = int(request.headers["webhook-timestamp"]) * 1_000_000
        monkeypatch.setattr(FrozenDatetime, "clock", staticmethod(lambda sent_us=sent_us: sent_us))
        body = Webhook(secret).verify(request.body, request.headers)
        assert request.headers["webhook-id"] == f"evt_{body['id']}"  # the same id on every attempt
    with engine.connect() as conn:
        statuses = conn.execute(select(event_schema.deliveries.c.status)).scalars().all()
    assert set(statuses) == {"succeeded"} and len(statuses) == len(emitted)


def test_a_replay_sends_the_same_message_again_and_replay_since_backfills(engine, clock, receiver):
    hooks = Webhooks(engine, local(retry_schedule_s=[0]), clock=clock)
    early = emit(engine, clock, alert("before the subscription"))
    sub, _ = hooks.create(receiver.url)
    receiver.status = 503
    (event_id,) = emit(engine, clock, alert("after"))
    drive(hooks)
    (delivery,) = hooks.deliveries(sub.id)
    assert delivery.status == "failed"  # a schedule of one attempt
    receiver.status = 200
    replayed = hooks.replay(sub.id, delivery.id)
    assert (replayed.status, replayed.attempts) == ("pending", 0)
    drive(hooks)
    (delivery,) = hooks.deliveries(sub.id)
    assert delivery.status == "succeeded"
    assert [a.kind for a in delivery.log] == ["attempt", "replay", "attempt"]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [f"evt_{event_id}"] * 2
    # Everything after id 0: the delivered one again, and the event from before the subscription.
    done = hooks.replay_since(sub.id, 0)
    assert (done.queued, done.more) == (2, False)
    drive(hooks)
    assert sorted(d.event_id for d in hooks.deliveries(sub.id, status="succeeded")) == sorted([*early, event_id])
    with pytest.raises(NotFound):
        hooks.replay(sub.id, 999_999)
    hooks.deactivate(sub.id)
    with pytest.raises(Conflict):
        hooks.replay(sub.id, delivery.id)


def test_deactivating_cancels_what_is_pending_and_stops_the_fan_out(engine, clock, receiver):
    receiver.status = 500
    hooks = Webhooks(engine, local(), clock=clock)
    sub, _ = hooks.create(receiver.url)
    emit(engine, clock, alert("one"))
    drive(hooks)
    hooks.deactivate(sub.id)
    emit(engine, clock, alert("two"))
    clock.advance(3600)
    assert drive(hooks) == (0, 0)
    assert [d.status for d in hooks.deliveries(sub.id)] == ["cancelled"]


def test_two_workers_never_send_the_same_delivery_at_once(engine, receiver):
    receiver.delay_s = 0.05
    settings = local(delivery_batch_max=3)
    first, second = Webhooks(engine, settings), Webhooks(engine, settings)
    first.create(receiver.url)
    emitted = emit(engine, first.clock, *(alert(f"event {i}") for i in range(24)))
    first.fan_out()
    errors: list[BaseException] = []

    def work(hooks: Webhooks, owner: str) -> None:
        try:
            for _ in range(200):
                if len(receiver.delivered()) >= len(emitted):
                    return
                hooks.deliver_due(owner)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(h, o)) for h, o in ((first, "w1"), (second, "w2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(f"evt_{i}" for i in emitted)
    assert set(receiver.most_in_flight.values()) == {1}
    with engine.connect() as conn:
        owners = conn.execute(select(event_schema.attempts.c.owner)).scalars().all()
    assert set(owners) <= {"w1", "w2"} and len(owners) == len(emitted)


def test_a_worker_whose_claim_ran_out_does_not_overwrite_the_one_that_took_over(engine, clock, receiver):
    hooks = Webhooks(engine, local(), clock=clock)
    sub, _ = hooks.create(receiver.url)
    emit(engine, clock, alert("one"))
    hooks.fan_out()
    (stalled,) = hooks._claim("w1")  # w1 claims, then stalls past its lease
    clock.advance(hooks.settings.delivery_lease_s + 1)
    assert hooks.deliver_due("w2") == 1
    hooks._record("w1", stalled, 500, "HTTP 500", 10)  # w1 comes back with an old answer
    (delivery,) = hooks.deliveries(sub.id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert [a.status_code for a in delivery.log] == [204, 500]  # both attempts are in the log


# ------------------------------------------------------------- where deliveries may go (SSRF)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://localhost:8545/",
        "https://api.localhost/x",
        "https://10.1.2.3/x",
        "https://192.168.0.10/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/x",
        "https://[::1]/x",
        "https://[fe80::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://0.0.0.0/x",
    ],
)
def test_an_endpoint_inside_the_bank_is_refused_at_creation(engine, clock, url):
    with pytest.raises(DomainError) as refused:
        Webhooks(engine, EventsSettings(), clock=clock).create(url)
    assert refused.value.code == "invalid_url" and "events.private_targets" in refused.value.message


def test_plain_http_and_private_targets_are_off_unless_set():
    settings = EventsSettings()
    assert (settings.allow_http, settings.private_targets) == (False, False)


def test_a_name_that_resolves_inside_is_refused_at_every_attempt_and_logged(engine, receiver):
    clock = now_clock()
    resolved: list[str] = []

    def resolve(host: str, port: int, **_: object) -> list[tuple]:
        resolved.append(host)
        return [(2, 1, 6, "", ("127.0.0.1", port))]  # a public-looking name rebound to this machine

    hooks = Webhooks(engine, EventsSettings(allow_http=True, retry_schedule_s=[0, 5]), clock=clock, resolve=resolve)
    sub, _ = hooks.create(receiver.url.replace("127.0.0.1", "hooks.example.com"))
    emit(engine, clock, alert("one"))
    assert drive(hooks) == (1, 1)
    (delivery,) = hooks.deliveries(sub.id)
    assert delivery.status == "pending" and receiver.requests == []
    (attempt,) = delivery.log
    assert attempt.status_code is None
    assert attempt.error.startswith("refused: hooks.example.com resolves to 127.0.0.1")
    assert resolved == ["hooks.example.com"]


def test_the_connection_goes_to_the_address_that_was_checked():
    from andchain.events.webhooks import Target, TargetRefused

    def resolve(host: str, port: int, **_: object) -> list[tuple]:
        return [
            (2, 1, 6, "", ("93.184.215.14", port)),
            (10, 1, 6, "", ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", port)),
        ]

    target = Target.of("https://hooks.example.com/in?x=1", private_targets=False, resolve=resolve)
    assert target.url == "https://93.184.215.14:443/in?x=1"
    assert target.headers == {"host": "hooks.example.com"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}
    assert target.pool == "hooks.example.com"
    plain = Target.of("http://hooks.example.com:8080/in", private_targets=False, resolve=resolve)
    assert (plain.url, plain.headers, plain.extensions) == (
        "http://93.184.215.14:8080/in",
        {"host": "hooks.example.com:8080"},
        {},
    )

    def mixed(host: str, port: int, **_: object) -> list[tuple]:
        return [(2, 1, 6, "", ("93.184.215.14", port)), (2, 1, 6, "", ("10.0.0.7", port))]

    with pytest.raises(TargetRefused, match=r"resolves to 10\.0\.0\.7"):
        Target.of("https://hooks.example.com/", private_targets=False, resolve=mixed)

    def unknown(host: str, port: int, **_: object) -> list[tuple]:
        raise OSError("Name or service not known")

    with pytest.raises(TargetRefused, match="cannot resolve"):
        Target.of("https://nowhere.example/", private_targets=False, resolve=unknown)
    assert Target.of("http://127.0.0.1:9/x", private_targets=True).url == "http://127.0.0.1:9/x"


def test_a_replay_that_meets_a_deactivation_queues_nothing(engine, clock, receiver, monkeypatch):
    """The subscription's state is read again inside the replay's transaction: a deactivation that
    lands between the replay's first look and its write leaves nothing to send."""
    receiver.status = 500
    hooks = Webhooks(engine, local(), clock=clock)
    sub, _ = hooks.create(receiver.url)
    emit(engine, clock, alert("one"))
    drive(hooks)
    (delivery,) = hooks.deliveries(sub.id)
    seen = hooks.get(sub.id)
    monkeypatch.setattr(hooks, "_active", lambda *a, **k: seen)  # the first look, made before the deactivation
    hooks.deactivate(sub.id)
    with pytest.raises(Conflict) as refused:
        hooks.replay(sub.id, delivery.id)
    assert refused.value.code == "webhook_inactive"
    with pytest.raises(Conflict):
        hooks.replay_since(sub.id, 0)
    assert [d.status for d in hooks.deliveries(sub.id)] == ["cancelled"]


def test_a_pending_delivery_of_a_deactivated_subscription_is_never_claimed(engine, clock, receiver):
    hooks = Webhooks(engine, local(), clock=clock)
    hooks.create(receiver.url)
    emit(engine, clock, alert("one"))
    hooks.fan_out()
    with engine.begin() as conn:  # deactivated by a writer that did not cancel the deliveries
        conn.execute(event_schema.webhooks.update().values(active=False))
    assert hooks.deliver_due("w1") == 0 and receiver.requests == []
