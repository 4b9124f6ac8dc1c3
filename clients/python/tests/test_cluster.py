"""Plugins, models, cluster and health through the sync client, against the real node."""

from __future__ import annotations

import pytest
from conftest import REPO, Node, unique

from synod_client import Client, InvalidArgumentError, NotFoundError, PermissionDeniedError

GREET = REPO / "plugins/examples/wasm/greet.wat"


def test_health_ready_cluster_and_registry(node: Node, client: Client) -> None:
    with Client(node.url) as anonymous:
        h = anonymous.health()
        assert h.status == "ok" and h.node_id and h.role == "leader"
        assert anonymous.ready().ready is True
    st = client.cluster_status()
    assert st.leader_id == h.node_id and st.voters == [h.node_id]
    assert st.nodes[0].http_addr == node.http and st.nodes[0].liveness == "alive"
    reg = client.registry(consistency="linearizable")
    assert [n.id for n in reg.nodes] == [h.node_id]
    assert "vectorize" in (reg.nodes[0].task_types or [])
    assert "model:all-MiniLM-L6-v2" in (reg.nodes[0].capabilities or [])
    with pytest.raises(InvalidArgumentError):
        client.registry(consistency="sometimes")


def test_plugins_and_models(client: Client) -> None:
    names = {p.name: p for p in client.plugins()}
    assert {"echo", "vectorize", "sleep"} <= names.keys()
    assert names["echo"].kind == "builtin"
    models = {m.name: m for m in client.models()}
    assert models["all-MiniLM-L6-v2"].here and models["all-MiniLM-L6-v2"].here["dimension"] == 384


def test_load_run_and_unload_a_wasm_plugin(client: Client) -> None:
    name = unique("greet").replace("-", "_")
    p = client.load_plugin({"name": name, "version": "1.0.0"}, GREET)
    assert (p.name, p.kind, p.version) == (name, "wasm", "1.0.0") and p.sha256
    again = client.load_plugin({"name": name, "version": "1.0.0"}, GREET.read_bytes())
    assert again.sha256 == p.sha256, "the same module again changes nothing"
    assert client.plugin(name).sha256 == p.sha256
    res = client.wait(client.submit(name, {"name": "Ada"}).id, timeout=30)
    assert res.result == {"greeting": "hello", "input": {"name": "Ada"}}
    client.unload_plugin(name)
    with pytest.raises(NotFoundError):
        client.unload_plugin(name)
    with pytest.raises(InvalidArgumentError) as info:
        client.load_plugin({"name": unique("bad")}, b"(module)")
    assert info.value.status == 400


def test_a_reader_is_refused_admin_operations(node: Node, client: Client) -> None:
    key = client.create_api_key(name=unique("reader"), role="reader")
    with Client(node.url, api_key=key.key) as reader:
        with pytest.raises(PermissionDeniedError) as info:
            reader.load_plugin({"name": "x", "version": "1"}, GREET)
    assert info.value.code == "permission_denied" and "may not do this" in info.value.message


def test_raw_requests_and_the_tenant_header(node: Node, client: Client) -> None:
    tenant = unique("team")
    client.request("POST", "/tenants", json={"name": tenant})
    assert tenant in [t["name"] for t in client.request("GET", "/tenants")["tenants"]]
    with Client(node.url, token=client.token, tenant=tenant) as other:
        sub = other.submit("echo", {"x": 1})
        assert other.status(sub.id).tenant == tenant
    with pytest.raises(NotFoundError):
        client.status(sub.id)  # another tenant's task is absent
    assert "synod_" in client.request("GET", "/metrics")
