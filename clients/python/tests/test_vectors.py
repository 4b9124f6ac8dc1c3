"""Collections, points and searches through the sync client, against the real node."""

from __future__ import annotations

import json
from typing import List, Optional, Tuple

import numpy as np
import pytest
from conftest import FAST_RETRY, Node, unique
from faults import FaultTransport

from synod_client import (
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Point,
    ResourceExhaustedError,
)


@pytest.fixture
def coll(client: Client) -> str:
    name = unique("py")
    client.create_collection(name, 4, metric="cosine")
    yield name
    client.delete_collection(name, missing_ok=True)


def test_collection_lifecycle(client: Client) -> None:
    name = unique("life")
    c = client.create_collection(name, 8, metric="l2", hnsw={"m": 16, "ef_construction": 100, "ef": 50})
    assert (c.name, c.dimension, c.metric, c.index, c.points) == (name, 8, "l2", "hnsw", 0)
    assert c.hnsw == {"m": 16, "ef_construction": 100, "ef": 50, "quantization": "none"}
    q = client.create_collection(unique("int8"), 8, hnsw={"quantization": "int8"})
    assert q.hnsw["quantization"] == "int8"
    client.delete_collection(q.name)
    assert name in [x.name for x in client.list_collections()]
    assert client.get_collection(name).dimension == 8
    with pytest.raises(FailedPreconditionError) as info:
        client.create_collection(name, 8)
    assert info.value.status == 412 and "already exists" in info.value.message
    assert client.create_collection(name, 8, exist_ok=True).name == name
    with pytest.raises(FailedPreconditionError):
        client.create_collection(name, 9, exist_ok=True)
    assert client.delete_collection(name) is True
    assert client.delete_collection(name, missing_ok=True) is False
    with pytest.raises(NotFoundError) as nf:
        client.get_collection(name)
    assert nf.value.message == f"collection {name} not found" and nf.value.status == 404


def test_upsert_lists_get_and_delete_points_with_ids_that_need_encoding(client: Client, coll: str) -> None:
    progress: List[Tuple[int, Optional[int]]] = []
    ids = ["s:a/b", "x y?#%", 7, "ümlaut"]
    points = [
        {"id": ids[0], "vector": [1, 0, 0, 0], "metadata": {"n": 1}},
        {"id": ids[1], "vector": [0, 1, 0, 0], "text": "hi"},
        Point(id=ids[2], vector=[0, 0, 1, 0]),
        {"id": ids[3], "vector": [0, 0, 0, 1]},
    ]
    out = client.upsert(coll, points, batch_size=3, on_progress=lambda d, t: progress.append((d, t)))
    assert (out.points, out.batches) == (4, 2)
    assert progress == [(3, 4), (4, 4)]
    assert out.collection is not None and out.collection.points == 4
    for pid in ids:
        assert client.get_point(coll, pid).id == pid
    p = client.get_point(coll, "s:a/b")
    assert p.vector == [1.0, 0.0, 0.0, 0.0] and p.metadata == {"n": 1}
    assert client.get_point(coll, "x y?#%").text == "hi"
    client.delete_points(coll, ["s:a/b", 7])
    with pytest.raises(NotFoundError) as info:
        client.get_point(coll, "s:a/b")
    assert info.value.message == f"point s:a/b not found in {coll}"
    assert client.get_collection(coll).points == 2


def test_upsert_errors_are_the_servers_and_the_clients(client: Client, coll: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.upsert(coll, [{"id": 1, "vector": [1, 2, 3]}])
    assert info.value.status == 400 and "dimension 4" in info.value.message
    with pytest.raises(ValueError):
        client.upsert(coll, [{"id": 1, "vector": [1, 2, 3, float("nan")]}])
    with pytest.raises(ValueError):
        client.upsert(coll, ids=[1], vectors=np.array([[1, 2, 3, np.inf]], dtype=np.float32))
    with pytest.raises(TypeError):
        client.upsert(coll, [{"id": -1.5, "vector": [1, 2, 3, 4]}])
    with pytest.raises(NotFoundError):
        client.upsert("no-such-collection", [{"id": 1, "vector": [1, 2, 3, 4]}])


def test_upsert_numpy_in_batches_under_the_body_limit(node: Node, client: Client) -> None:
    name = unique("np")
    dim, n = 384, 2500
    client.create_collection(name, dim)
    vectors = np.random.default_rng(7).standard_normal((n, dim)).astype(np.float32)
    progress: List[Tuple[int, Optional[int]]] = []
    transport = FaultTransport([])
    limit = 512 * 1024
    with Client(node.url, token=client.token, transport=transport, max_body_bytes=limit, retry=FAST_RETRY) as c:
        out = c.upsert(name, ids=np.arange(n), vectors=vectors, on_progress=lambda d, t: progress.append((d, t)))
    bodies = [s.body for s in transport.requests("POST", f"/collections/{name}/points")]
    assert out.points == n and out.batches == len(bodies) > 1
    assert max(len(b) for b in bodies) <= limit
    assert progress[-1] == (n, n) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert sum(len(json.loads(b)["points"]) for b in bodies) == n
    assert client.get_collection(name).points == n
    got = np.array(client.get_point(name, 1234).vector, dtype=np.float32)
    assert np.array_equal(got, vectors[1234]), "float32 components round-trip exactly"
    hits = client.search(name, vectors[42], top_k=3)
    assert hits[0].id == 42 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    client.delete_collection(name)


def test_upsert_with_texts_and_metadata_into_a_vectorizer_collection(client: Client) -> None:
    name = unique("text")
    client.create_collection(name, 384, vectorizer="all-MiniLM-L6-v2")
    texts = ["the cat sat on the mat", "dogs bark at night", "stock markets fell today"]
    client.upsert(name, ids=["a", "b", "c"], texts=texts, metadata=[{"n": 1}, {"n": 2}, {"n": 3}])
    hits = client.search(name, text="a cat on a mat", top_k=2)
    assert hits[0].id == "a" and hits[0].metadata == {"n": 1}
    filtered = client.search(name, text="night", filter={"must": [{"key": "n", "range": {"gte": 2}}]}, top_k=3)
    assert {h.id for h in filtered} <= {"b", "c"} and filtered[0].id == "b"
    batch = client.search_batch(name, [{"text": "dogs"}, {"text": "markets", "top_k": 1}], top_k=2)
    assert [len(r) for r in batch] == [2, 1]
    assert batch[0][0].id == "b" and batch[1][0].id == "c"
    client.delete_collection(name)


def test_search_and_batch_search_by_vector(client: Client, coll: str) -> None:
    client.upsert(coll, ids=[1, 2, 3], vectors=[[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 0, 1]])
    res = client.search(coll, [1, 0, 0, 0], top_k=2, consistency="linearizable")
    assert [h.id for h in res] == [1, 2] and len(res) == 2 and res.behind_by == 0
    batch = client.search_batch(coll, np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32), top_k=1)
    assert [[h.id for h in r] for r in batch] == [[1], [3]]
    with pytest.raises(InvalidArgumentError) as info:
        client.search(coll, [1, 0], top_k=1)
    assert info.value.status == 400
    with pytest.raises(ValueError):
        client.search(coll)


def test_a_body_over_the_nodes_limit_is_refused_with_413(node: Node, client: Client, coll: str) -> None:
    """The default max_body_bytes is the node's default node.max_body_size
    (2 MiB): a client told the node takes more gets the node's 413."""
    points = [{"id": i, "vector": [0.123456789, 0.2, 0.3, 0.4], "metadata": {"pad": "x" * 3000}} for i in range(900)]
    with Client(node.url, token=client.token, max_body_bytes=8 << 20, retry=FAST_RETRY) as c:
        with pytest.raises(ResourceExhaustedError) as info:
            c.upsert(coll, points)
    assert info.value.status == 413 and "too large" in info.value.message
    out = client.upsert(coll, points)  # the default limit: cut to fit
    assert out.batches == 2 and client.get_collection(coll).points == 900
