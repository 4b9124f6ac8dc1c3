"""The async client against the real node: the same operations, awaited."""

from __future__ import annotations

import inspect
import uuid
from typing import List, Tuple

import anyio
import numpy as np
import pytest
from conftest import Node, unique

from synod_client import AsyncClient, Client, InvalidArgumentError, NotFoundError, UnauthenticatedError

pytestmark = pytest.mark.anyio


async def test_login_submit_wait_and_whoami(aclient: AsyncClient) -> None:
    assert (await aclient.whoami()).role == "admin"
    sub = await aclient.submit("vectorize", {"text": "hello world"})
    res = await aclient.wait(sub.id, timeout=60)
    assert res.succeeded and res.result["dimension"] == 384
    assert (await aclient.status(sub.id)).state == "succeeded"


async def test_api_key_login(node: Node, aclient: AsyncClient) -> None:
    key = await aclient.create_api_key(name=unique("async"))
    async with AsyncClient(node.url, api_key=key.key) as c:
        assert (await c.whoami()).subject == f"apikey:{key.id}"
    async with AsyncClient(node.url, api_key="sk_nope_nope") as c:
        with pytest.raises(UnauthenticatedError) as info:
            await c.whoami()
    assert info.value.status == 401


async def test_concurrent_submits_batch_list_and_cancel(aclient: AsyncClient) -> None:
    marker = uuid.uuid4().hex
    results: List[str] = []

    async def one(i: int) -> None:
        sub = await aclient.submit("echo", {"m": marker, "i": i})
        results.append((await aclient.wait(sub.id, timeout=30)).state)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    assert results == ["succeeded"] * 8
    subs = await aclient.submit_batch([{"type": "echo", "payload": {"m": marker, "b": i}} for i in range(2)])
    assert len(subs) == 2
    mine = [t async for t in aclient.iter_tasks(type="echo", payloads=True, page_size=50) if t.payload["m"] == marker]
    assert len(mine) == 10
    page = await aclient.list_tasks(limit=1)
    assert len(page.tasks) == 1
    slow = await aclient.submit("sleep", {"ms": 60000})
    await aclient.cancel(slow.id)
    assert (await aclient.wait(slow.id, timeout=30)).state == "cancelled"


async def test_watch(aclient: AsyncClient) -> None:
    sub = await aclient.submit("sleep", {"ms": 500})
    states = [t.state async for t in aclient.watch(sub.id, interval=0.05)]
    assert states[-1] == "succeeded" and "running" in states


async def test_collections_numpy_upsert_and_searches(aclient: AsyncClient) -> None:
    name = unique("anp")
    await aclient.create_collection(name, 16, exist_ok=True)
    vectors = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    progress: List[Tuple[int, int]] = []

    async def on_progress(done: int, total: int) -> None:  # an awaitable callback is awaited
        progress.append((done, total))

    out = await aclient.upsert(name, ids=range(300), vectors=vectors, batch_size=128, on_progress=on_progress)
    assert (out.points, out.batches) == (300, 3) and progress == [(128, 300), (256, 300), (300, 300)]
    hits = await aclient.search(name, vectors[9], top_k=1)
    assert hits[0].id == 9
    batch = await aclient.search_batch(name, vectors[:3], top_k=1)
    assert [r[0].id for r in batch] == [0, 1, 2]
    assert (await aclient.get_point(name, 5)).id == 5
    await aclient.delete_points(name, [5])
    with pytest.raises(NotFoundError):
        await aclient.get_point(name, 5)
    assert name in [c.name for c in await aclient.list_collections()]
    assert await aclient.delete_collection(name)
    with pytest.raises(InvalidArgumentError) as info:
        await aclient.create_collection(name, 0)
    assert info.value.status == 400 and info.value.code == "invalid_argument"


async def test_cluster_reads(aclient: AsyncClient) -> None:
    assert (await aclient.health()).status == "ok"
    assert (await aclient.ready()).ready
    st = await aclient.cluster_status()
    assert st.leader_id is not None and len(st.nodes) == 1
    assert (await aclient.registry()).nodes[0].id == st.leader_id
    assert "vectorize" in [p.name for p in await aclient.plugins()]
    assert "all-MiniLM-L6-v2" in [m.name for m in await aclient.models()]


def test_the_two_clients_have_the_same_methods_and_signatures() -> None:
    def public(cls: type) -> dict:
        return {n: inspect.signature(f) for n, f in vars(cls).items() if callable(f) and not n.startswith("_")}

    sync, asyn = public(Client), public(AsyncClient)
    sync.pop("close")
    asyn.pop("aclose")
    assert sync.keys() == asyn.keys()
    for name, sig in sync.items():
        a = asyn[name]
        assert list(sig.parameters) == list(a.parameters), name
        assert [p.default for p in sig.parameters.values()] == [p.default for p in a.parameters.values()], name
        streams = ("watch", "iter_tasks")
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) == (name not in streams + ("from_env",)), name
