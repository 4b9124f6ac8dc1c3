"""Every operation of the client, once, as a program (see ``_core``)."""

from __future__ import annotations

import base64
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _points
from ._core import Call, Emit, Notify, Program, Session, Sleep, execute, json_call, new_idempotency_key, path
from .errors import FailedPreconditionError, NotFoundError, WaitTimeoutError
from .models import (
    ApiKey,
    ClusterStatus,
    Collection,
    Health,
    Model,
    Plugin,
    Point,
    PointId,
    Registry,
    SearchResults,
    Submitted,
    Task,
    TaskPage,
    TaskResult,
    TaskSpec,
    UpsertResult,
    WhoAmI,
)
from .retry import Safety

READ, IDEMPOTENT, UNSAFE = Safety.READ, Safety.IDEMPOTENT, Safety.UNSAFE

#: The server's longest long poll (``GET /tasks/{id}/result?wait=``).
MAX_WAIT = 60.0
#: Extra seconds a long poll's read timeout allows beyond its wait.
POLL_SLACK = 10.0

Progress = Callable[[int, Optional[int]], Any]


def _drop_none(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# ---- health and identity


def health(sess: Session) -> Program[Health]:
    return (
        yield from execute(
            sess, Call("GET", "/health", "health", READ, parse=lambda r: Health.from_json(r.json()), auth=False)
        )
    )


def ready(sess: Session) -> Program[Health]:
    call = Call(
        "GET",
        "/health/ready",
        "ready",
        READ,
        parse=lambda r: Health.from_json(r.json()),
        auth=False,
        ok_statuses=(503,),
    )
    return (yield from execute(sess, call))


def whoami(sess: Session) -> Program[WhoAmI]:
    return (
        yield from execute(sess, Call("GET", "/whoami", "whoami", READ, parse=lambda r: WhoAmI.from_json(r.json())))
    )


def cluster_status(sess: Session) -> Program[ClusterStatus]:
    call = Call("GET", "/cluster/status", "cluster_status", READ, parse=lambda r: ClusterStatus.from_json(r.json()))
    return (yield from execute(sess, call))


def registry(sess: Session, consistency: Optional[str]) -> Program[Registry]:
    call = Call(
        "GET",
        "/agents/registry",
        "registry",
        READ,
        parse=lambda r: Registry.from_json(r.json()),
        params=_drop_none({"consistency": consistency}),
    )
    return (yield from execute(sess, call))


def create_api_key(
    sess: Session, name: Optional[str], role: Optional[str], expires_in: Optional[int]
) -> Program[ApiKey]:
    # Not idempotent: a repeat makes a second key. Never resent after an
    # unknown outcome.
    body = _drop_none({"name": name, "role": role, "expires_in": expires_in})
    return (yield from execute(sess, json_call("POST", "/apikeys", "create_api_key", UNSAFE, body, parse=_api_key)))


def _api_key(r: Any) -> ApiKey:
    return ApiKey.from_json(r.json())


def api_keys(sess: Session) -> Program[List[ApiKey]]:
    call = Call("GET", "/apikeys", "api_keys", READ, parse=lambda r: [ApiKey.from_json(k) for k in r.json()["keys"]])
    return (yield from execute(sess, call))


def revoke_api_key(sess: Session, key_id: str) -> Program[ApiKey]:
    # Revoking a revoked key answers the same record: idempotent.
    return (
        yield from execute(
            sess, Call("DELETE", path("/apikeys/{}", key_id), "revoke_api_key", IDEMPOTENT, parse=_api_key)
        )
    )


# ---- tasks


def _spec_json(t: Union[TaskSpec, Mapping[str, Any]]) -> Dict[str, Any]:
    body = t.to_json() if isinstance(t, TaskSpec) else dict(t)
    if "type" not in body:
        raise ValueError("a task needs a type")
    body.setdefault("payload", {})
    if not body.get("idempotency_key"):
        # Every task gets a key, so a resend can never make a second task.
        body["idempotency_key"] = new_idempotency_key()
    return body


def submit(sess: Session, spec: TaskSpec) -> Program[Submitted]:
    body = _spec_json(spec)
    key = body["idempotency_key"]
    headers = {"Idempotency-Key": key} if key.isascii() else {}
    call = json_call(
        "POST",
        "/tasks/submit",
        "submit",
        IDEMPOTENT,
        body,
        headers=headers,
        parse=lambda r: Submitted.from_json(r.json(), key),
        idempotency_key=key,
    )
    return (yield from execute(sess, call))


def submit_batch(sess: Session, tasks: Sequence[Union[TaskSpec, Mapping[str, Any]]]) -> Program[List[Submitted]]:
    bodies = [_spec_json(t) for t in tasks]
    keys = [b["idempotency_key"] for b in bodies]

    def parse(r: Any) -> List[Submitted]:
        return [Submitted.from_json(s, k) for s, k in zip(r.json()["tasks"], keys)]

    call = json_call(
        "POST", "/tasks/submit", "submit_batch", IDEMPOTENT, {"tasks": bodies}, parse=parse, idempotency_keys=keys
    )
    return (yield from execute(sess, call))


def status(sess: Session, task_id: str) -> Program[Task]:
    call = Call("GET", path("/tasks/{}/status", task_id), "status", READ, parse=lambda r: Task.from_json(r.json()))
    return (yield from execute(sess, call))


def result(sess: Session, task_id: str, wait: float) -> Program[TaskResult]:
    if wait < 0:
        raise ValueError("wait must be >= 0 seconds")
    wait = min(wait, MAX_WAIT)
    call = Call(
        "GET",
        path("/tasks/{}/result", task_id),
        "result",
        READ,
        parse=lambda r: TaskResult.from_json(r.json()),
        params={"wait": _seconds(wait)} if wait else None,
        read_timeout=wait + POLL_SLACK if wait else None,
    )
    return (yield from execute(sess, call))


def _seconds(s: float) -> str:
    return f"{s:.3f}".rstrip("0").rstrip(".")


def wait(sess: Session, task_id: str, timeout: Optional[float]) -> Program[TaskResult]:
    """Long-polls the result until the task is finished or ``timeout`` passes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = MAX_WAIT if deadline is None else max(0.0, min(MAX_WAIT, deadline - time.monotonic()))
        r: TaskResult = yield from result(sess, task_id, left)
        if r.finished:
            return r
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"task {task_id} is still {r.state} after {timeout}s", operation="wait")


def list_tasks(
    sess: Session,
    state: Optional[str],
    type: Optional[str],
    limit: Optional[int],
    cursor: Optional[str],
    payloads: bool,
) -> Program[TaskPage]:
    params = _drop_none({"state": state, "type": type, "limit": limit, "cursor": cursor})
    if payloads:
        params["payloads"] = "true"
    call = Call("GET", "/tasks", "list_tasks", READ, parse=lambda r: TaskPage.from_json(r.json()), params=params)
    return (yield from execute(sess, call))


def iter_tasks(
    sess: Session, state: Optional[str], type: Optional[str], page_size: Optional[int], payloads: bool
) -> Program[None]:
    cursor = None
    while True:
        page: TaskPage = yield from list_tasks(sess, state, type, page_size, cursor, payloads)
        for t in page.tasks:
            yield Emit(t)
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def cancel(sess: Session, task_id: str) -> Program[Task]:
    call = Call(
        "POST", path("/tasks/{}/cancel", task_id), "cancel", IDEMPOTENT, parse=lambda r: Task.from_json(r.json())
    )
    try:
        return (yield from execute(sess, call))
    except FailedPreconditionError as e:
        # After an attempt with an unknown outcome, "already cancelled" may
        # be our own first attempt's doing: the task's state answers.
        if not e.after_unknown_outcome:
            raise
        t: Task = yield from status(sess, task_id)
        if t.state == "cancelled" or t.cancel_requested:
            return t
        raise


def watch(sess: Session, task_id: str, interval: float, timeout: Optional[float]) -> Program[None]:
    """Emits the task's status at first and whenever it changes, until it is finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        t: Task = yield from status(sess, task_id)
        seen = (t.state, len(t.attempts), t.updated_at_ms, t.cancel_requested, t.node_id)
        if seen != last:
            last = seen
            yield Emit(t)
        if t.finished:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"task {task_id} is still {t.state} after {timeout}s", operation="watch")
        yield Sleep(interval)


# ---- plugins and models


def plugins(sess: Session) -> Program[List[Plugin]]:
    call = Call(
        "GET", "/plugins/list", "plugins", READ, parse=lambda r: [Plugin.from_json(p) for p in r.json()["plugins"]]
    )
    return (yield from execute(sess, call))


def plugin(sess: Session, name: str) -> Program[Plugin]:
    call = Call("GET", path("/plugins/{}", name), "plugin", READ, parse=lambda r: Plugin.from_json(r.json()))
    return (yield from execute(sess, call))


def load_plugin(
    sess: Session, manifest: Mapping[str, Any], module: Union[bytes, str, "os.PathLike[str]", None]
) -> Program[Plugin]:
    body: Dict[str, Any] = {"manifest": dict(manifest)}
    if module is not None:
        data = module if isinstance(module, bytes) else open(module, "rb").read()
        body["module_base64"] = base64.b64encode(data).decode()
    # Plugins are content-addressed: loading the same module again is a no-op.
    call = json_call(
        "POST", "/plugins/load", "load_plugin", IDEMPOTENT, body, parse=lambda r: Plugin.from_json(r.json())
    )
    return (yield from execute(sess, call))


def unload_plugin(sess: Session, name: str) -> Program[None]:
    call: Call[Any] = Call("POST", path("/plugins/{}/unload", name), "unload_plugin", IDEMPOTENT)
    try:
        yield from execute(sess, call)
    except NotFoundError as e:
        if not e.after_unknown_outcome:
            raise


def models(sess: Session) -> Program[List[Model]]:
    call = Call("GET", "/models", "models", READ, parse=lambda r: [Model.from_json(m) for m in r.json()["models"]])
    return (yield from execute(sess, call))


# ---- collections and points


def _collection(r: Any) -> Collection:
    return Collection.from_json(r.json())


def list_collections(sess: Session) -> Program[List[Collection]]:
    call = Call(
        "GET",
        "/collections",
        "list_collections",
        READ,
        parse=lambda r: [Collection.from_json(c) for c in r.json()["collections"]],
    )
    return (yield from execute(sess, call))


def get_collection(sess: Session, name: str) -> Program[Collection]:
    return (
        yield from execute(sess, Call("GET", path("/collections/{}", name), "get_collection", READ, parse=_collection))
    )


def create_collection(sess: Session, body: Dict[str, Any], exist_ok: bool) -> Program[Collection]:
    # Creating twice answers "already exists": with exist_ok that is the
    # answer wanted, so a resend is safe; without, it is not.
    call = json_call(
        "POST", "/collections", "create_collection", IDEMPOTENT if exist_ok else UNSAFE, body, parse=_collection
    )
    try:
        return (yield from execute(sess, call))
    except FailedPreconditionError as e:
        if not exist_ok:
            raise
        try:
            c: Collection = yield from get_collection(sess, body["name"])
        except NotFoundError:
            raise e from None
        if c.dimension != body["dimension"]:
            raise FailedPreconditionError(
                f"collection {c.name} exists with dimension {c.dimension}, not {body['dimension']}",
                status=e.status,
                operation="create_collection",
            ) from e
        return c


def delete_collection(sess: Session, name: str, missing_ok: bool) -> Program[bool]:
    """True: the collection is gone and this call may have deleted it (an
    answered delete, or "not found" after an attempt whose outcome was
    unknown: most likely that attempt's own doing). False: the node said
    it was absent before any attempt of this call could have deleted it."""
    call: Call[Any] = Call("DELETE", path("/collections/{}", name), "delete_collection", IDEMPOTENT)
    try:
        yield from execute(sess, call)
    except NotFoundError as e:
        if e.after_unknown_outcome:
            return True
        if missing_ok:
            return False
        raise
    return True


def upsert(
    sess: Session,
    name: str,
    points: Optional[Iterable[Union[Point, Mapping[str, Any]]]],
    ids: Optional[Iterable[PointId]],
    vectors: Any,
    texts: Optional[Sequence[Optional[str]]],
    metadata: Optional[Sequence[Optional[Mapping[str, Any]]]],
    batch_size: Optional[int],
    on_progress: Optional[Progress],
) -> Program[UpsertResult]:
    """Sends the points in batches under the server's limits; an existing id
    is replaced, so a resent batch changes nothing more."""
    frags, total = _points.fragments(points, ids, vectors, texts, metadata)
    max_points = min(batch_size or sess.max_batch, sess.max_batch)
    done = batches = 0
    last = None
    route = path("/collections/{}/points", name)
    for body, n in _points.pack(frags, max_points, sess.max_body_bytes):
        call = Call(
            "POST",
            route,
            "upsert",
            IDEMPOTENT,
            parse=_collection,
            content=body,
            headers={"Content-Type": "application/json"},
        )
        last = yield from execute(sess, call)
        done += n
        batches += 1
        if on_progress is not None:
            yield Notify(on_progress, (done, total))
    return UpsertResult(points=done, batches=batches, collection=last)


def get_point(sess: Session, name: str, point_id: PointId) -> Program[Point]:
    call = Call(
        "GET",
        path("/collections/{}/points/{}", name, _points.check_id(point_id)),
        "get_point",
        READ,
        parse=lambda r: Point.from_json(r.json()),
    )
    return (yield from execute(sess, call))


def delete_points(sess: Session, name: str, ids: Iterable[PointId]) -> Program[Optional[Collection]]:
    all_ids = [_points.check_id(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    last = None
    route = path("/collections/{}/points", name)
    for i in range(0, len(all_ids), sess.max_batch):
        chunk = all_ids[i : i + sess.max_batch]
        last = yield from execute(
            sess, json_call("DELETE", route, "delete_points", IDEMPOTENT, {"ids": chunk}, parse=_collection)
        )
    return last


def _query(q: Any, top_k: Optional[int]) -> Dict[str, Any]:
    if isinstance(q, Mapping):
        body = {k: v for k, v in q.items() if v is not None}
    else:
        body = {"vector": q}
    if "vector" in body:
        body["vector"] = _points.vector_list(body["vector"])
    if top_k is not None:
        body.setdefault("top_k", top_k)
    return body


def search(
    sess: Session,
    name: str,
    vector: Any,
    text: Optional[str],
    top_k: Optional[int],
    filter: Any,
    ef: Optional[int],
    consistency: Optional[str],
) -> Program[SearchResults]:
    if (vector is None) == (text is None):
        raise ValueError("search by a vector or by a text (one of them)")
    body = _drop_none(
        {
            "collection": name,
            "vector": None if vector is None else _points.vector_list(vector),
            "text": text,
            "top_k": top_k,
            "filter": filter,
            "ef": ef,
            "consistency": consistency,
        }
    )
    return (
        yield from execute(
            sess,
            json_call(
                "POST", "/vector/search", "search", READ, body, parse=lambda r: SearchResults.from_json(r.json())
            ),
        )
    )


def search_batch(
    sess: Session, name: str, queries: Any, top_k: Optional[int], consistency: Optional[str]
) -> Program[List[SearchResults]]:
    body = _drop_none({"collection": name, "queries": [_query(q, top_k) for q in queries], "consistency": consistency})
    call = json_call(
        "POST",
        "/vector/search/batch",
        "search_batch",
        READ,
        body,
        parse=lambda r: SearchResults.batch_from_json(r.json()),
    )
    return (yield from execute(sess, call))


# ---- raw


def request(
    sess: Session, method: str, route: str, json_body: Any, params: Optional[Dict[str, Any]], safety: Optional[Safety]
) -> Program[Any]:
    method = method.upper()
    if safety is None:
        safety = READ if method in ("GET", "HEAD") else UNSAFE

    def parse(r: Any) -> Any:
        if not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    if json_body is not None:
        call = json_call(method, route, f"{method} {route}", safety, json_body, parse=parse, params=params)
    else:
        call = Call(method, route, f"{method} {route}", safety, parse=parse, params=params)
    return (yield from execute(sess, call))
