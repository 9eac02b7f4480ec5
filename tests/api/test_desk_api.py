"""/v1/desk over HTTP: a client asks and accepts for itself (202 with the trade, the same trade again),
another client sees nothing of it, the desk halts and the client reads the denial's code, malformed
bodies are refused with nothing recorded, an expired quote answers 409, and the trade settles while
the worker runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from andchain.api import create_app
from andchain.custody.port import DESK
from andchain.ops.core import OpStatus
from tests.conftest import FakeClock
from tests.custody.test_bank_reports import Played
from tests.trading.test_rfq import BTC, Desk


class Http:
    """The test client, with a fresh Idempotency-Key on every POST."""

    def __init__(self, http: TestClient) -> None:
        self.inner = http
        self.keys = 0

    def post(self, path: str, **kwargs: object):
        self.keys += 1
        headers = {"Idempotency-Key": f"k-{self.keys}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return self.inner.post(path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: object):
        return self.inner.get(path, **kwargs)

    def put(self, path: str, **kwargs: object):
        return self.inner.put(path, **kwargs)


class Api:
    def __init__(self, world: Desk, http: TestClient) -> None:
        self.world, self.http = world, Http(http)

    def key(self, role: str, client_id: str | None = None) -> dict[str, str]:
        _, key = self.world.ctx.api_keys.create(role, client_id=client_id, label=f"test {role}")
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(engine, tmp_path) -> Iterator[Api]:
    world = Desk(engine, tmp_path, FakeClock(), Played())
    world.fund_at_custodian(DESK, 5 * BTC)
    app = create_app(world.ctx)
    app.state.tokens = world.custody.tokens
    app.state.custody = world.custody
    app.state.desk = world.desk
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as http:
        yield Api(world, http)
    world.ctx.close()


def test_a_client_quotes_and_accepts_for_itself_and_the_trade_settles(api):
    ada = api.world.client("Ada", 1_000_000_00)
    bob = api.world.client("Bob", 1_000_000_00)
    me = api.key("client", ada)
    asked = api.http.post("/v1/desk/quotes", json={"instrument": "BTC-USD", "side": "buy", "quantity": "0.25"},
                          headers=me)  # fmt: skip
    assert asked.status_code == 201, asked.text
    quote = asked.json()
    assert (quote["client"], quote["status"], quote["trade"]) == (ada, "open", None)
    other = api.key("client", bob)
    assert api.http.get(f"/v1/desk/quotes/{quote['id']}", headers=other).status_code == 404
    assert api.http.post(f"/v1/desk/quotes/{quote['id']}/accept", headers=other).status_code == 404
    assert api.http.get("/v1/desk/quotes", headers=other).json()["data"] == []

    accepted = api.http.post(f"/v1/desk/quotes/{quote['id']}/accept", headers=me)
    assert accepted.status_code == 202, accepted.text
    trade = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{trade['id']}"
    again = api.http.post(f"/v1/desk/quotes/{quote['id']}/accept", headers=me)
    assert (again.status_code, again.json()["id"]) == (202, trade["id"])

    done = api.world.drive(trade["id"])
    assert done.status == OpStatus.SUCCEEDED
    seen = api.http.get(f"/v1/desk/quotes/{quote['id']}", headers=me).json()
    assert (seen["status"], seen["trade"]) == ("settled", trade["id"])
    desk = api.key("desk")
    positions = api.http.get("/v1/desk/positions", headers=desk)
    assert positions.status_code == 200
    assert positions.json()["net"] == {"BTC": "0E-8"}
    assert api.http.get("/v1/desk/positions", headers=me).status_code == 403


def test_the_desk_halts_and_a_client_reads_why(api):
    ada = api.world.client("Ada", 1_000_000_00)
    me = api.key("client", ada)
    desk = api.key("desk")
    assert api.http.post("/v1/desk/state", json={"state": "halted", "reason": "x"}, headers=me).status_code == 403
    halted = api.http.post("/v1/desk/state", json={"state": "halted", "reason": "venue outage"}, headers=desk)
    assert halted.status_code == 200, halted.text
    refused = api.http.post("/v1/desk/quotes", json={"instrument": "BTC-USD", "side": "buy", "quantity": "0.1"},
                            headers=me)  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["code"] == "trading_halted"
    assert "venue outage" in refused.json()["detail"]
    states = api.http.get("/v1/desk/state", headers=me).json()["data"]
    assert states == [{"scope": "desk", "state": "halted", "reason": "venue outage"}]
    events = api.http.get("/v1/events", headers=me).json()["data"]
    assert [e["type"] for e in events] == ["desk.risk_denied"]
    resumed = api.http.post("/v1/desk/state", json={"state": "active", "reason": "back"}, headers=desk)
    assert resumed.status_code == 200
    tier = api.http.put(f"/v1/desk/tiers/{ada}", json={"tier": "basic"}, headers=desk)
    assert tier.json() == {"client": ada, "tier": "basic"}
    assert api.http.get(f"/v1/desk/tiers/{ada}", headers=me).json()["tier"] == "basic"
    assert api.http.put(f"/v1/desk/tiers/{ada}", json={"tier": "gold"}, headers=desk).json()["code"] == "unknown_tier"


def test_bad_requests_are_refused_with_nothing_recorded(api):
    ada = api.world.client("Ada", 1_000_000_00)
    me = api.key("client", ada)
    operator = api.key("operator")
    bodies = [
        {"instrument": "BTC-USD", "side": "buy", "quantity": 0.5},
        {"instrument": "BTC-USD", "side": "buy", "quantity": "abc"},
        {"instrument": "BTC-USD", "side": "short", "quantity": "1"},
        {"instrument": "btc", "side": "buy", "quantity": "1"},
        {"instrument": "BTC-USD", "side": "buy", "quantity": "1", "extra": True},
        {"instrument": "BTC-USD", "side": "buy"},
    ]
    for body in bodies:
        answer = api.http.post("/v1/desk/quotes", json=body, headers=me)
        assert answer.status_code == 422, (body, answer.text)
    no_client = api.http.post("/v1/desk/quotes", json={"instrument": "BTC-USD", "side": "buy", "quantity": "1"},
                              headers=operator)  # fmt: skip
    assert (no_client.status_code, no_client.json()["code"]) == (422, "invalid_request")
    assert api.world.desk.quotes() == []
    assert api.http.post("/v1/desk/quotes/nope/accept", headers=me).status_code == 404
    quote = api.http.post("/v1/desk/quotes", json={"instrument": "BTC-USD", "side": "buy", "quantity": "0.01",
                                                   "client": ada}, headers=operator).json()  # fmt: skip
    api.world.clock.advance(6)
    expired = api.http.post(f"/v1/desk/quotes/{quote['id']}/accept", headers=me)
    assert (expired.status_code, expired.json()["code"]) == (409, "quote_expired")
    assert api.http.get(f"/v1/desk/quotes/{quote['id']}", headers=me).json()["status"] == "expired"


def test_orders_over_http_match_between_two_clients_and_each_sees_only_its_own(api):
    seller = api.world.client("Sal")
    api.world.fund_at_custodian(seller, BTC)
    buyer = api.world.client("Bri", 1_000_000_00)
    price = api.world.venue.fetch_order_book("BTC-USD").mid.quantize(1)
    mine, theirs = api.key("client", seller), api.key("client", buyer)
    sell = {"instrument": "BTC-USD", "side": "sell", "quantity": "0.5", "price": str(price)}
    rest = api.http.post("/v1/desk/orders", headers=mine, json=sell)
    assert rest.status_code == 201, rest.text
    order = rest.json()
    assert (order["status"], order["remaining"], order["trades"]) == ("open", "0.5", [])
    depth = api.http.get("/v1/desk/books/BTC-USD", headers=theirs).json()
    assert depth["asks"] == [[f"{price}.00", "0.5"]] and "client" not in str(depth)
    assert api.http.get(f"/v1/desk/orders/{order['id']}", headers=theirs).status_code == 404
    assert api.http.post(f"/v1/desk/orders/{order['id']}/cancel", headers=theirs).status_code == 404
    buy = {"instrument": "BTC-USD", "side": "buy", "quantity": "0.2", "price": str(price), "time_in_force": "ioc"}
    taken = api.http.post("/v1/desk/orders", headers=theirs, json=buy)
    assert taken.status_code == 201, taken.text
    trade = taken.json()["trades"][0]
    assert (trade["with"], trade["quantity"]) == ("book", "0.2")
    assert api.world.drive(trade["trade"]).status == OpStatus.SUCCEEDED
    amended = api.http.post(f"/v1/desk/orders/{order['id']}/amend", headers=mine, json={"quantity": "0.4"})
    assert (amended.status_code, amended.json()["remaining"]) == (200, "0.2")
    cancelled = api.http.post(f"/v1/desk/orders/{order['id']}/cancel", headers=mine)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = api.http.post(f"/v1/desk/orders/{order['id']}/cancel", headers=mine)
    assert (again.status_code, again.json()["code"]) == (409, "order_not_open")
    listed = api.http.get("/v1/desk/orders", headers=theirs).json()["data"]
    assert [o["client"] for o in listed] == [buyer]
    bad = api.http.post("/v1/desk/orders", headers=mine, json={"instrument": "BTC-USD", "side": "sell",
                                                               "quantity": "0.1", "price": 1.5})  # fmt: skip
    assert bad.status_code == 422


def test_a_query_parameter_of_one_value_given_twice_is_refused(api):
    desk = api.key("desk")
    twice = api.http.get("/v1/desk/quotes?limit=1&limit=2", headers=desk)
    assert (twice.status_code, twice.json()["code"]) == (422, "invalid_request")
    assert "more than once" in twice.json()["detail"]
    assert api.http.get("/v1/operations?kind=mint&kind=pay", headers=desk).status_code == 422
    assert api.http.get("/v1/desk/quotes?limit=2", headers=desk).status_code == 200
