"""/v1/networks over HTTP: health read from the node, the pause switch and the move rate limits."""

from __future__ import annotations

from tests.api.conftest import Bank


def test_networks_show_their_node_and_controls_and_an_admin_pauses_moves(bank: Bank):
    auditor, admin = bank.key("auditor"), bank.key("admin")
    networks = {n["name"]: n for n in bank.get("/v1/networks", auditor).json()["data"]}
    internal = networks["internal"]
    assert internal["kind"] == "permissioned" and internal["chain_id"] == 770077
    assert internal["health"]["healthy"] and internal["health"]["node_chain_id"] == 770077
    assert internal["health"]["block"] == bank.ctx.chain("internal").block_number()
    assert internal["controls"]["paused"] is False and internal["controls"]["outbound_available"] == "100000000000.00"
    assert {"ethereum", "base", "tempo"} <= set(networks)

    refused = bank.post("/v1/networks/internal/pause", {"reason": "incident 42"}, bank.key("operator"))
    assert refused.status_code == 403
    paused = bank.post("/v1/networks/internal/pause", {"reason": "incident 42"}, admin)
    assert paused.status_code == 200 and paused.json()["paused"] and paused.json()["reason"] == "incident 42"
    assert bank.get("/v1/networks/internal/controls", auditor).json()["paused"] is True

    resumed = bank.post("/v1/networks/internal/resume", None, admin)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False and resumed.json()["reason"] is None
    for missing in (
        bank.get("/v1/networks/mars/controls", auditor),
        bank.post("/v1/networks/mars/pause", {"reason": "x"}, admin),
        bank.post("/v1/networks/mars/resume", None, admin),
    ):
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_network"
    assert bank.post("/v1/networks/internal/pause", {"reason": ""}, admin).status_code == 422
    assert bank.get("/v1/networks", bank.key("client", "c1")).status_code == 403


def test_a_node_that_does_not_answer_is_reported_not_an_error(bank: Bank):
    bank.ctx.settings.networks["base"] = bank.ctx.settings.networks["base"].model_copy(
        update={"rpc_url": "http://127.0.0.1:9", "local": False}
    )
    base = {n["name"]: n for n in bank.get("/v1/networks", bank.key("compliance")).json()["data"]}["base"]
    assert base["health"]["healthy"] is False and base["health"]["block"] is None
    assert base["health"]["detail"].startswith("not answering: node base at http://127.0.0.1:9")
