"""Python client for Synod.

Two clients with the same methods, :class:`Client` (blocking) and
:class:`AsyncClient` (``async``/``await``), both on httpx::

    from synod_client import Client

    with Client("http://127.0.0.1:7700") as client:
        client.login("admin", password)
        task = client.submit("vectorize", {"text": "hello world"})
        print(client.wait(task.id, timeout=60).result["dimension"])

Writes are retried safely: a task submit always carries an idempotency key
(generated when none is given), so a resend after a timeout finds the task
the first attempt made instead of making a second one. See
:mod:`synod_client.retry` and :mod:`synod_client.errors`.
"""

__version__ = "0.1.0"

from .aio import AsyncClient  # noqa: E402
from .client import Client  # noqa: E402
from .errors import (  # noqa: E402
    ConnectionFailedError,
    FailedPreconditionError,
    IndeterminateError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SynodError,
    UnauthenticatedError,
    UnavailableError,
    WaitTimeoutError,
)
from .models import (  # noqa: E402
    ApiKey,
    ClusterNode,
    ClusterStatus,
    Collection,
    Health,
    Model,
    NodeRecord,
    Plugin,
    Point,
    PointId,
    Registry,
    SearchHit,
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
from .retry import RetryPolicy, Safety  # noqa: E402

__all__ = [
    "AsyncClient",
    "Client",
    "RetryPolicy",
    "Safety",
    "ApiKey",
    "ClusterNode",
    "ClusterStatus",
    "Collection",
    "Health",
    "Model",
    "NodeRecord",
    "Plugin",
    "Point",
    "PointId",
    "Registry",
    "SearchHit",
    "SearchResults",
    "Submitted",
    "Task",
    "TaskPage",
    "TaskResult",
    "TaskSpec",
    "Token",
    "UpsertResult",
    "WhoAmI",
    "SynodError",
    "InvalidArgumentError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "NotFoundError",
    "FailedPreconditionError",
    "ResourceExhaustedError",
    "UnavailableError",
    "ConnectionFailedError",
    "IndeterminateError",
    "InternalError",
    "WaitTimeoutError",
]
