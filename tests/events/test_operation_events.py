"""Operations emit an event per status change, for each client concerned, in the transaction of the change."""

from __future__ import annotations

from andchain.events import EventLog
from andchain.ops import Operations, OpStatus


def types_of(engine, client_id=None) -> list[tuple[str, str | None]]:
    return [(e.type, e.client_id) for e in EventLog(engine).read(client_id=client_id).events]


def test_every_status_change_of_a_mint_is_an_event_for_its_client(engine, clock):
    ops = Operations(engine, clock=clock)
    payload = {"client": "acme", "network": "internal", "amount": 12_345, "holder": "0xA"}
    op, _ = ops.create("mint", "mint-1", payload, network="internal")
    op = ops.update(op, status=OpStatus.SUBMITTED, state={"tx": {"hash": "0x1"}})
    op = ops.update(op, detail="still waiting")  # no status change: no event
    op = ops.update(op, status=OpStatus.CONFIRMING)
    ops.update(op, status=OpStatus.SUCCEEDED, result={"tx_hash": "0x1", "block": 7, "amount": 12_345})
    assert types_of(engine) == [
        ("operation.received", "acme"),
        ("operation.submitted", "acme"),
        ("operation.confirming", "acme"),
        ("operation.succeeded", "acme"),
        ("mint.succeeded", "acme"),
    ]
    last = EventLog(engine).read().events[-1]
    assert last.subject == op.id
    assert last.payload == {
        "operation": op.id,
        "kind": "mint",
        "network": "internal",
        "status": "succeeded",
        "previous_status": "confirming",
        "request": {"client": "acme", "network": "internal", "amount_minor": "12345"},
        "tx_hash": "0x1",
        "block": 7,
    }


def test_a_payment_is_an_event_for_each_party_and_each_sees_only_its_own(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create(
        "pay", "pay-1", {"from": "acme", "to": "globex", "network": "internal", "amount": 500, "memo": "inv 7"}
    )
    ops.update(op, status=OpStatus.FAILED, error=("reverted", "node http://10.0.0.5:8545 says no"))
    assert types_of(engine, "acme") == [("operation.received", "acme"), ("operation.failed", "acme")]
    assert types_of(engine, "globex") == [("operation.received", "globex"), ("operation.failed", "globex")]
    assert types_of(engine, "initech") == []
    failed = EventLog(engine).read(client_id="globex").events[-1]
    assert failed.payload["request"] == {
        "from": "acme",
        "to": "globex",
        "network": "internal",
        "memo": "inv 7",
        "amount_minor": "500",
    }
    # The code, never the message: a message can name the bank's internal systems.
    assert failed.payload["error_code"] == "reverted" and "10.0.0.5" not in str(failed.payload)


def test_a_move_concerns_its_client_not_the_addresses_it_names_from_and_to(engine, clock):
    ops = Operations(engine, clock=clock)
    payload = {"client": "acme", "source": "internal", "destination": "base", "amount": 1, "from": "0xA", "to": "0xB"}
    op, _ = ops.create("move", "move-1", payload, network="internal")
    ops.attention(op, "compensation_refused", "the source refused the mint back")
    assert types_of(engine) == [("operation.received", "acme"), ("operation.needs_attention", "acme")]


def test_an_operation_of_no_client_is_an_event_for_the_bank_alone(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create("return_stray", "stray-1", {"network": "internal", "receiver": "0xC", "amount": 3})
    ops.cancel(op.id)
    assert types_of(engine) == [("operation.received", None), ("operation.cancelled", None)]
    assert EventLog(engine).read(client_id="acme").events == []


def test_a_stale_write_emits_nothing(engine, clock):
    ops = Operations(engine, clock=clock)
    op, _ = ops.create("redeem", "redeem-1", {"client": "acme", "amount": 9})
    ops.update(op, status=OpStatus.SUBMITTED)
    assert ops.update_if_current(op, status=OpStatus.FAILED) is None  # a stale copy
    assert types_of(engine) == [("operation.received", "acme"), ("operation.submitted", "acme")]


def test_the_same_request_twice_is_one_operation_and_one_event(engine, clock):
    ops = Operations(engine, clock=clock)
    ops.create("mint", "same-key", {"client": "acme", "amount": 1})
    ops.create("mint", "same-key", {"client": "acme", "amount": 1})
    assert types_of(engine) == [("operation.received", "acme")]
