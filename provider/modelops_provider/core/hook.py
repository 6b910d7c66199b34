"""Base hook: resolves an Airflow connection once into a :class:`Service` and runs calls against it."""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.providers.common.compat.sdk import BaseHook

from modelops_provider.core.retry import RetryPolicy, bounded_number
from modelops_provider.core.transport import (
    Call,
    Service,
    iterate,
    new_sync_client,
    run_async,
    run_sync,
    shared_async_client,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

T = TypeVar("T")


# Upper bounds of the duration extras, in seconds.
MAX_TIMEOUT_S = 600.0
MAX_ADOPTION_WINDOW_S = 3600.0


def _number(extra: dict[str, Any], key: str, default: float, maximum: float = MAX_TIMEOUT_S) -> float:
    raw = extra.get(key)
    if raw is None or raw == "":
        return default
    return bounded_number(
        f"connection extra {key!r} (seconds)", raw, minimum=0.0, maximum=maximum, exclusive_minimum=True
    )


def timeout_from_extra(extra: dict[str, Any]) -> httpx.Timeout:
    """Connect/read timeouts from a connection's extra (``connect_timeout``, ``read_timeout``)."""
    read = _number(extra, "read_timeout", 30.0)
    return httpx.Timeout(read, connect=_number(extra, "connect_timeout", 10.0))


def adoption_window_from_extra(extra: dict[str, Any]) -> float | None:
    """The connection extra ``adoption_window`` (seconds), None when unset (the default applies)."""
    if extra.get("adoption_window") in (None, ""):
        return None
    return _number(extra, "adoption_window", 0.0, maximum=MAX_ADOPTION_WINDOW_S)


def service_options(extra: dict[str, Any]) -> dict[str, Any]:
    """What every service reads from its connection's extra: retries, timeouts, TLS, adoption window."""
    return {
        "retry": RetryPolicy.from_extra(extra),
        "timeout": timeout_from_extra(extra),
        "verify": verify_from_extra(extra),
        "adoption_window": adoption_window_from_extra(extra),
    }


def verify_from_extra(extra: dict[str, Any]) -> bool:
    """TLS certificate verification (extra ``verify_ssl``; on unless set to false/0/no)."""
    return str(extra.get("verify_ssl", True)).strip().lower() not in ("false", "0", "no")


def split_host(host: str | None, port: int | None, scheme: str | None, *, default_scheme: str = "https") -> str:
    """Build ``scheme://host[:port]`` from connection fields; a scheme written into the host is honoured."""
    host = (host or "").strip().rstrip("/")
    if not host:
        raise ValueError("the connection has no host")
    if "://" in host:
        written, host = host.split("://", 1)
        scheme = scheme or written
    scheme = (scheme or default_scheme).lower()
    if scheme not in ("https", "http"):
        raise ValueError(f"connection scheme must be 'https' or 'http', got {scheme!r}")
    netloc = host if (port is None or ":" in host) else f"{host}:{port}"
    return f"{scheme}://{netloc}"


class ApiHook(BaseHook):
    """Shared hook machinery. Subclasses declare the connection type and build their :class:`Service`.

    The connection is looked up once per hook (``get_conn``/``aget_conn``); the sync client is kept for
    the hook's life; async calls share one client per event loop and service address.
    """

    conn_name_attr = "conn_id"
    default_conn_name = ""
    conn_type = ""
    hook_name = ""

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name
        self._service: Service | None = None
        self._client: httpx.Client | None = None

    @abstractmethod
    def build_service(self, conn: Connection) -> Service:
        """Turn the Airflow connection into a Service (address, auth, retries, timeouts)."""

    @staticmethod
    def retry_policy(extra: dict[str, Any]) -> RetryPolicy:
        return RetryPolicy.from_extra(extra)

    def get_conn(self) -> Service:
        if self._service is None:
            self._service = self.build_service(self.get_connection(self.conn_id))
        return self._service

    async def aget_conn(self) -> Service:
        """Resolve the connection without blocking the event loop."""
        if self._service is None:
            getter = getattr(BaseHook, "aget_connection", None)
            if getter is not None:
                conn = await getter(self.conn_id)
            else:  # pragma: no cover - Airflow 2.x
                from asgiref.sync import sync_to_async

                conn = await sync_to_async(BaseHook.get_connection)(self.conn_id)
            self._service = self.build_service(conn)
        return self._service

    @property
    def service(self) -> Service:
        return self.get_conn()

    def call(self, call: Call[T]) -> T:
        """Run a call with this hook's (long-lived) sync client."""
        if self._client is None or self._client.is_closed:
            self._client = new_sync_client(self.service)
        return run_sync(self._client, call)

    async def acall(self, call: Call[T]) -> T:
        """Run a call with the event loop's shared async client. Call ``aget_conn()`` first."""
        return await run_async(shared_async_client(await self.aget_conn()), call)

    def iterate(self, fetch: Callable[[str | None], Call[tuple[list[T], str | None]]]) -> Iterator[T]:
        return iterate(self.call, fetch)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
