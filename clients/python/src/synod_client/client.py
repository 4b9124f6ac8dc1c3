"""The blocking client."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import httpx

from . import _core, _ops
from ._base import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, ClientBase, TimeoutTypes, Verify, env_defaults
from ._core import Emit, Notify, Program, Send, Sleep, T
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
    Token,
    UpsertResult,
    WhoAmI,
)
from .retry import RetryPolicy, Safety

__all__ = ["Client"]


class Client(ClientBase):
    """A blocking client of one Synod node (any node: writes are forwarded
    to the leader by the node).

    Args:
        addr: the node's REST address, ``http://127.0.0.1:7700`` or ``https://...``.
        token: a bearer token (from a login elsewhere).
        api_key: an API key (``sk_...``), sent as ``X-API-Key``.
        username, password: log in with these on first use, and again
            whenever the token expires or is refused (see also :meth:`login`).
        tenant: act in this tenant (``X-Synod-Tenant``; admins only).
        verify: TLS: ``True`` (system CAs), ``False``, the path of a PEM CA
            file (e.g. the ``ca.pem`` of ``synod certs init``), or an
            ``ssl.SSLContext``.
        timeout: seconds (or an ``httpx.Timeout``) for connect, read and
            write; long polls extend their read timeout by themselves.
        retry: the :class:`RetryPolicy` (default: 5 attempts, 0.1 s backoff
            doubling to 5 s).
        max_body_bytes: the node's ``node.max_body_size`` (default 2 MiB):
            upserts are cut into requests no larger.
        max_batch: the node's ``vector_db.max_batch`` (default 1000).
        transport: an httpx transport (tests, proxies, fault injection).
        **httpx_kwargs: passed to ``httpx.Client``.
    """

    def __init__(
        self,
        addr: str = "http://127.0.0.1:7700",
        *,
        token: Optional[str] = None,
        api_key: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        tenant: Optional[str] = None,
        verify: Verify = True,
        timeout: TimeoutTypes = 30.0,
        retry: Optional[RetryPolicy] = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_batch: int = DEFAULT_MAX_BATCH,
        transport: Optional[httpx.BaseTransport] = None,
        **httpx_kwargs: Any,
    ) -> None:
        kw = self._setup(
            addr,
            token=token,
            api_key=api_key,
            username=username,
            password=password,
            tenant=tenant,
            verify=verify,
            timeout=timeout,
            retry=retry,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
        )
        kw.update(httpx_kwargs)
        self._http = httpx.Client(transport=transport, **kw)

    @classmethod
    def from_env(cls, addr: Optional[str] = None, **kw: Any) -> "Client":
        """A client configured like the CLI: ``SYNOD_ADDR`` (else
        ``http://127.0.0.1:7700``), ``SYNOD_TOKEN`` or ``SYNOD_API_KEY``,
        ``SYNOD_CA_CERT``; keyword arguments win."""
        d = env_defaults(addr, kw.pop("token", None), kw.pop("api_key", None), kw.pop("verify", None))
        return cls(d.pop("addr"), **d, **kw)

    # ---- the driver

    def _perform(self, instr: Any) -> Any:
        if isinstance(instr, Send):
            req = self._http.build_request(
                instr.method,
                instr.path,
                params=instr.params,
                headers=instr.headers,
                content=instr.content,
                timeout=_core.timeout_for(instr, self._timeout),
            )
            try:
                return self._http.send(req)
            except httpx.TransportError as e:
                return e
        if isinstance(instr, Sleep):
            time.sleep(instr.seconds)
            return None
        if isinstance(instr, Notify):
            instr.fn(*instr.args)
            return None
        raise TypeError(f"unknown instruction {instr!r}")

    def _drive(self, prog: Program[T]) -> T:
        value: Any = None
        while True:
            try:
                instr = prog.send(value)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value = self._perform(instr)

    def _stream(self, prog: Program[None]) -> Iterator[Any]:
        value: Any = None
        try:
            while True:
                try:
                    instr = prog.send(value)
                except StopIteration:
                    return
                if isinstance(instr, Emit):
                    value = None
                    yield instr.value
                else:
                    value = self._perform(instr)
        finally:
            prog.close()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- identity and cluster

    def login(self, username: str, password: str) -> Token:
        """``POST /login``. The credentials are kept to log in again when the
        token expires (1 h by default) or is refused."""
        tok = self._drive(_core.login(self._session, username, password))
        self._session.username, self._session.password = username, password
        return tok

    def whoami(self) -> WhoAmI:
        return self._drive(_ops.whoami(self._session))

    def health(self) -> Health:
        """``GET /health`` (liveness; no credentials needed)."""
        return self._drive(_ops.health(self._session))

    def ready(self) -> Health:
        """``GET /health/ready``: ``.ready`` is true once the node serves."""
        return self._drive(_ops.ready(self._session))

    def cluster_status(self) -> ClusterStatus:
        return self._drive(_ops.cluster_status(self._session))

    def registry(self, consistency: Optional[str] = None) -> Registry:
        """``GET /agents/registry``; ``consistency``: ``local`` or ``linearizable``."""
        return self._drive(_ops.registry(self._session, consistency))

    def create_api_key(
        self, name: Optional[str] = None, role: Optional[str] = None, expires_in: Optional[int] = None
    ) -> ApiKey:
        """A new key in the caller's tenant; ``.key`` is the secret, shown once.
        Never resent after an unknown outcome (a repeat makes a second key)."""
        return self._drive(_ops.create_api_key(self._session, name, role, expires_in))

    def api_keys(self) -> List[ApiKey]:
        return self._drive(_ops.api_keys(self._session))

    def revoke_api_key(self, key_id: str) -> ApiKey:
        return self._drive(_ops.revoke_api_key(self._session, key_id))

    # ---- tasks

    def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        priority: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        max_attempts: Optional[int] = None,
        timeout_ms: Optional[int] = None,
        labels: Optional[Dict[str, str]] = None,
        backoff: Optional[Dict[str, Any]] = None,
    ) -> Submitted:
        """Submits one task. Without ``idempotency_key`` one is generated, so
        the client's own resends never make a second task."""
        spec = TaskSpec(type, payload, priority, idempotency_key, max_attempts, timeout_ms, labels, backoff)
        return self._drive(_ops.submit(self._session, spec))

    def submit_batch(self, tasks: Sequence[Union[TaskSpec, Mapping[str, Any]]]) -> List[Submitted]:
        """Submits up to 1000 tasks in one replicated write (all or none).
        Each task without an ``idempotency_key`` gets one; an
        :class:`IndeterminateError` lists them in ``.idempotency_keys`` (in
        order), so the same tasks can be resubmitted with them."""
        return self._drive(_ops.submit_batch(self._session, tasks))

    def status(self, task_id: str) -> Task:
        return self._drive(_ops.status(self._session, task_id))

    def result(self, task_id: str, wait: float = 0) -> TaskResult:
        """The result if finished (``.finished``); ``wait`` long-polls up to that many seconds (max 60)."""
        return self._drive(_ops.result(self._session, task_id, wait))

    def wait(self, task_id: str, timeout: Optional[float] = None) -> TaskResult:
        """Waits until the task is finished and returns its result; raises
        :class:`WaitTimeoutError` after ``timeout`` seconds (None: no limit)."""
        return self._drive(_ops.wait(self._session, task_id, timeout))

    def list_tasks(
        self,
        *,
        state: Optional[str] = None,
        type: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        payloads: bool = False,
    ) -> TaskPage:
        """One page of the tenant's tasks in submission order."""
        return self._drive(_ops.list_tasks(self._session, state, type, limit, cursor, payloads))

    def iter_tasks(
        self,
        *,
        state: Optional[str] = None,
        type: Optional[str] = None,
        page_size: Optional[int] = None,
        payloads: bool = False,
    ) -> Iterator[Task]:
        """Every task, following the pages' cursors."""
        return self._stream(_ops.iter_tasks(self._session, state, type, page_size, payloads))

    def cancel(self, task_id: str) -> Task:
        return self._drive(_ops.cancel(self._session, task_id))

    def watch(self, task_id: str, *, interval: float = 0.25, timeout: Optional[float] = None) -> Iterator[Task]:
        """The task's status now and at each change, until it is finished
        (REST has no stream: this polls every ``interval`` seconds)."""
        return self._stream(_ops.watch(self._session, task_id, interval, timeout))

    # ---- plugins and models

    def plugins(self) -> List[Plugin]:
        return self._drive(_ops.plugins(self._session))

    def plugin(self, name: str) -> Plugin:
        return self._drive(_ops.plugin(self._session, name))

    def load_plugin(
        self, manifest: Mapping[str, Any], module: Union[bytes, str, "os.PathLike[str]", None] = None
    ) -> Plugin:
        """Loads a WASM plugin (``module``: its bytes or file) or, with
        ``manifest["kind"] == "subprocess"``, a subprocess plugin (admin)."""
        return self._drive(_ops.load_plugin(self._session, manifest, module))

    def unload_plugin(self, name: str) -> None:
        return self._drive(_ops.unload_plugin(self._session, name))

    def models(self) -> List[Model]:
        return self._drive(_ops.models(self._session))

    # ---- collections

    def list_collections(self) -> List[Collection]:
        return self._drive(_ops.list_collections(self._session))

    def get_collection(self, name: str) -> Collection:
        return self._drive(_ops.get_collection(self._session, name))

    def create_collection(
        self,
        name: str,
        dimension: int,
        *,
        metric: Optional[str] = None,
        hnsw: Optional[Dict[str, Any]] = None,
        vectorizer: Optional[str] = None,
        index: Optional[str] = None,
        backend: Optional[Dict[str, Any]] = None,
        exist_ok: bool = False,
    ) -> Collection:
        """Creates a collection. ``exist_ok``: an existing one of the same
        dimension is returned instead of raising (and the call may be resent)."""
        body = _ops._drop_none(
            {
                "name": name,
                "dimension": dimension,
                "metric": metric,
                "hnsw": hnsw,
                "vectorizer": vectorizer,
                "index": index,
                "backend": backend,
            }
        )
        return self._drive(_ops.create_collection(self._session, body, exist_ok))

    def delete_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        """Deletes it and its points. True: it is gone and this call may have
        deleted it (also when a resend after a lost answer found it absent:
        the lost attempt most likely did it). Already absent before this call
        could delete it: False with ``missing_ok``, else :class:`NotFoundError`."""
        return self._drive(_ops.delete_collection(self._session, name, missing_ok))

    def upsert(
        self,
        collection: str,
        points: Optional[Iterable[Union[Point, Mapping[str, Any]]]] = None,
        *,
        ids: Optional[Iterable[PointId]] = None,
        vectors: Any = None,
        texts: Optional[Sequence[Optional[str]]] = None,
        metadata: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
        batch_size: Optional[int] = None,
        on_progress: Optional[_ops.Progress] = None,
    ) -> UpsertResult:
        """Upserts points, in as many requests as the node's limits need.

        Give ``points`` (mappings ``{"id", "vector", "text", "metadata"}`` or
        :class:`Point`), or ``ids`` with ``vectors`` (a 2-d numpy array or a
        list of lists) and/or ``texts`` and ``metadata``. ``batch_size`` caps
        points per request (the body size caps it too); ``on_progress(done,
        total)`` is called after each request. Each request is all or
        nothing; an error stops at that batch, earlier batches stay.
        """
        return self._drive(
            _ops.upsert(self._session, collection, points, ids, vectors, texts, metadata, batch_size, on_progress)
        )

    def get_point(self, collection: str, point_id: PointId) -> Point:
        """One point. The node reads a path id that looks like an integer as
        the integer id first: a string id ``"7"`` is shadowed by a point ``7``."""
        return self._drive(_ops.get_point(self._session, collection, point_id))

    def delete_points(self, collection: str, ids: Iterable[PointId]) -> Optional[Collection]:
        return self._drive(_ops.delete_points(self._session, collection, ids))

    def search(
        self,
        collection: str,
        vector: Any = None,
        *,
        text: Optional[str] = None,
        top_k: Optional[int] = None,
        filter: Optional[Mapping[str, Any]] = None,
        ef: Optional[int] = None,
        consistency: Optional[str] = None,
    ) -> SearchResults:
        """Nearest points to ``vector`` (a list or numpy array) or to ``text``
        (collections with a vectorizer)."""
        return self._drive(_ops.search(self._session, collection, vector, text, top_k, filter, ef, consistency))

    def search_batch(
        self,
        collection: str,
        queries: Any,
        *,
        top_k: Optional[int] = None,
        consistency: Optional[str] = None,
    ) -> List[SearchResults]:
        """Several queries in one request: mappings ``{"vector" | "text",
        "top_k", "filter", "ef"}``, or the rows of a 2-d array; one result
        list per query."""
        return self._drive(_ops.search_batch(self._session, collection, queries, top_k, consistency))

    # ---- anything else

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Dict[str, Any]] = None,
        safety: Optional[Safety] = None,
    ) -> Any:
        """Any route, with the client's credentials, errors and retries.
        ``safety`` (default: READ for GET, else UNSAFE) decides what is resent."""
        return self._drive(_ops.request(self._session, method, path, json, params, safety))
