"""Construction shared by :class:`Client` and :class:`AsyncClient`."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import httpx

from . import __version__
from ._core import Session, base_url, ssl_context
from .retry import RetryPolicy

#: The server's default ``node.max_body_size`` (2 MiB): the largest request body.
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
#: The server's default ``vector_db.max_batch``: most points per upsert or delete.
DEFAULT_MAX_BATCH = 1000

TimeoutTypes = Union[None, float, httpx.Timeout]
Verify = Union[bool, str, "os.PathLike[str]", Any]


def env_defaults(addr: Optional[str], token: Optional[str], api_key: Optional[str], verify: Any) -> Dict[str, Any]:
    """The CLI's variables: ``SYNOD_ADDR``, ``SYNOD_TOKEN``, ``SYNOD_API_KEY``, ``SYNOD_CA_CERT``."""
    return {
        "addr": addr or os.environ.get("SYNOD_ADDR") or "http://127.0.0.1:7700",
        "token": token or os.environ.get("SYNOD_TOKEN") or None,
        "api_key": api_key or (None if token else os.environ.get("SYNOD_API_KEY")) or None,
        "verify": verify if verify is not None else (os.environ.get("SYNOD_CA_CERT") or True),
    }


class ClientBase:
    """Settings common to both clients (see :class:`synod_client.Client`)."""

    _session: Session

    def _setup(
        self,
        addr: str,
        *,
        token: Optional[str],
        api_key: Optional[str],
        username: Optional[str],
        password: Optional[str],
        tenant: Optional[str],
        verify: Verify,
        timeout: TimeoutTypes,
        retry: Optional[RetryPolicy],
        max_body_bytes: int,
        max_batch: int,
    ) -> Dict[str, Any]:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        self._session = Session(
            token=token,
            api_key=api_key,
            username=username,
            password=password,
            tenant=tenant,
            retry=retry or RetryPolicy(),
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            user_agent=f"synod-client-python/{__version__}",
        )
        self.base_url = base_url(addr)
        t = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._timeout = t
        return {"base_url": self.base_url, "timeout": t, "verify": ssl_context(verify)}

    @property
    def retry(self) -> RetryPolicy:
        return self._session.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self._session.retry = policy

    @property
    def token(self) -> Optional[str]:
        """The bearer token in use (after :meth:`login`, or as given)."""
        return self._session.token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"
