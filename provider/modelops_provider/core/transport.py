"""One HTTP core for every integration.

An endpoint is described once (:class:`Endpoint`). Calling it produces a *call*: a generator that
yields the HTTP requests (and the waits between retries) it needs and receives their answers. The
same call is executed either by :func:`run_sync` with an ``httpx.Client`` or by :func:`run_async` with
an ``httpx.AsyncClient``. Retries, ``Retry-After``, token refresh, error mapping and decoding are
therefore written once, and composite operations (list-then-find, fall back to another endpoint)
are plain ``yield from`` compositions that work in operators and triggers alike.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from modelops_provider.core import errors
from modelops_provider.core.retry import Action, Kind, MalformedBody, RetryPolicy, decide, describe_failure

log = logging.getLogger(__name__)


class _WithholdHeaderValues(logging.Filter):
    """httpcore's debug trace quotes h11's "Illegal header value b'Bearer <token>'": keep the event,
    drop its details."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return True
        if "header value" in text or "LocalProtocolError" in text:
            record.msg, record.args = "%s (details withheld: they may quote a header value)", (text.split(" ", 1)[0],)
        return True


# Filters apply to the logger a record is logged on, so each of httpcore's loggers gets one.
for _name in ("httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy", "httpx"):
    logging.getLogger(_name).addFilter(_WithholdHeaderValues())

T = TypeVar("T")
# The default adoption window is the read timeout plus this.
ADOPTION_MARGIN_S = 30.0
USER_AGENT = "airflow-provider-modelops"


@dataclass(frozen=True)
class Sleep:
    """A step of a call: wait this many seconds (time.sleep or asyncio.sleep, by driver)."""

    seconds: float


Step = httpx.Request | Sleep
Reply = httpx.Response | BaseException | None
Call = Generator[Step, Reply, T]


def encode_path(template: str, params: Mapping[str, Any]) -> str:
    """Fill a path template; every parameter is percent-encoded (a '/' in a value stays inside it)."""
    return template.format_map({k: quote(str(v), safe="") for k, v in params.items()})


@dataclass(frozen=True)
class Endpoint(Generic[T]):
    """An HTTP endpoint, described once: method, path template, fixed query, response model."""

    method: str
    path: str
    response: Any = None
    query: Mapping[str, Any] = field(default_factory=dict)
    creates: bool = False
    # Sending it twice leaves the same state as once (a cancel, a status update): retried like a read.
    idempotent: bool = False
    # The service answers success with plain text (e.g. Pluto ingest), decoded as a str, not JSON.
    text: bool = False

    @property
    def kind(self) -> Kind:
        """How safe a re-send is, for the retry rule (:func:`modelops_provider.core.retry.decide`)."""
        if self.creates:
            return Kind.CREATE
        if self.idempotent or self.method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"):
            return Kind.READ if self.method in ("GET", "HEAD", "OPTIONS") else Kind.IDEMPOTENT
        return Kind.APPEND

    def decode(self, payload: Any) -> T:
        if self.response is None:
            return payload  # type: ignore[no-any-return]
        adapter = _adapter(self.response)
        return adapter.validate_python(payload)  # type: ignore[no-any-return]

    def read(self, reply: httpx.Response) -> T:
        """Decode a success answer: text, nothing, or JSON. JSON with a response model is parsed
        straight into it (one pass, no intermediate dict: at 100 builds per getBatch answer, most of a
        poll's CPU was spent building dicts that were then validated). Raises ValueError: not JSON, or
        (:class:`pydantic.ValidationError`) not the schema."""
        if self.text:
            return self.decode(reply.text)
        content = reply.content
        if not content.strip():
            return self.decode(None)
        if self.response is None:
            return self.decode(reply.json())
        return _adapter(self.response).validate_json(content)  # type: ignore[no-any-return]


_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    adapter = _ADAPTERS.get(tp)
    if adapter is None:
        adapter = _ADAPTERS[tp] = pydantic.TypeAdapter(tp)
    return adapter


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer says, as read by its service's parser (``Service.parse_error``). Each
    package reads its own service's shape (``foundry/errors.py``, ``ducklake/errors.py``,
    ``pluto/errors.py``); :func:`generic_error_body` is what they fall back on."""

    message: str
    error_name: str | None = None
    error_code: str | int | None = None
    error_instance_id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # The typed error the answer means when its HTTP status alone does not say it (e.g. an
    # authentication failure wrapped in a 422); None: the status decides.
    error_class: type[errors.ApiError] | None = None

    def fields(self) -> dict[str, Any]:
        """The :class:`~modelops_provider.core.errors.ApiError` keyword arguments it fills."""
        return {
            "error_name": self.error_name,
            "error_code": self.error_code,
            "error_instance_id": self.error_instance_id,
            "parameters": dict(self.parameters),
        }


def error_json(response: httpx.Response) -> dict[str, Any] | None:
    """The error answer's JSON object, or None when it is not one (the generic parser reads those)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def generic_error_body(response: httpx.Response) -> ErrorBody:
    """The fallback for an answer in no shape its service's parser knows: a text body, or a JSON
    body's ``detail`` (FastAPI, RFC 7807) or string ``error`` (OAuth 2, e.g. a token endpoint's
    ``invalid_client``); else the HTTP reason phrase."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return ErrorBody(text[:500] if text else response.reason_phrase)
    if not isinstance(body, dict):
        return ErrorBody(str(body)[:500])
    if "error" in body and not isinstance(body["error"], dict):
        return ErrorBody(str(body["error"]))
    if "detail" in body:
        return ErrorBody(str(body["detail"]))
    return ErrorBody(response.reason_phrase or f"HTTP {response.status_code}")


class Auth:
    """How a request is authenticated. Holds the secret; never renders it anywhere but a header."""

    refreshable = False

    def headers(self, service: Service) -> Call[dict[str, str]]:
        return {}
        yield  # pragma: no cover  (makes this a generator)

    def invalidate(self) -> None:
        """Forget a cached credential after a 401."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"


class HeaderAuth(Auth):
    """A static secret in one header: ``Authorization: Bearer <token>`` or ``X-API-Key: <key>``."""

    def __init__(self, header: str, value: str) -> None:
        self._header = header
        self._value = value

    def headers(self, service: Service) -> Call[dict[str, str]]:
        return {self._header: self._value}
        yield  # pragma: no cover


def bearer(token: str) -> HeaderAuth:
    return HeaderAuth("Authorization", f"Bearer {token}")


@dataclass
class _CachedToken:
    value: str
    refresh_at: float


# Per process, shared by every hook and trigger that uses the same client credentials.
_TOKEN_CACHE: dict[tuple[str, str, str, str], _CachedToken] = {}


class OAuth2ClientCredentials(Auth):
    """OAuth2 client-credentials grant; the token is cached per process and refreshed before expiry."""

    refreshable = True
    # Refresh 60 s before expiry, or at 75 % of the lifetime for short-lived tokens.
    refresh_margin = 60.0

    def __init__(self, token_path: str, client_id: str, client_secret: str, scopes: tuple[str, ...] = ()) -> None:
        self.token_path = token_path
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes
        self._key: tuple[str, str, str, str] | None = None

    def _cache_key(self, service: Service) -> tuple[str, str, str, str]:
        # The secret's digest is part of the key: a connection with a wrong or revoked secret must
        # not ride on a token another connection obtained for the same client id.
        digest = hashlib.sha256(self._client_secret.encode()).hexdigest()
        return (service.base_url + self.token_path, self.client_id, " ".join(self.scopes), digest)

    def headers(self, service: Service) -> Call[dict[str, str]]:
        key = self._key = self._cache_key(service)
        cached = _TOKEN_CACHE.get(key)
        if cached is None or cached.refresh_at <= time.time():
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            }
            if self.scopes:
                # Foundry's own client always asks for offline_access alongside the scopes.
                scopes = list(self.scopes) + ([] if "offline_access" in self.scopes else ["offline_access"])
                form["scope"] = " ".join(scopes)
            token = yield from service.call(TOKEN_ENDPOINT, path_template=self.token_path, data=form, auth=Auth())
            if not isinstance(token, dict) or not token.get("access_token"):
                raise errors.UnauthorizedError(
                    "token endpoint answered without an access_token",
                    method="POST",
                    path=self.token_path,
                    service=service.name,
                )
            from modelops_provider.core.secrets import mask

            mask(token["access_token"])
            lifetime = float(token.get("expires_in") or 3600)
            cached = _TOKEN_CACHE[key] = _CachedToken(
                value=str(token["access_token"]),
                refresh_at=time.time() + lifetime - min(self.refresh_margin, lifetime / 4),
            )
        return {"Authorization": f"Bearer {cached.value}"}

    def invalidate(self) -> None:
        if self._key is not None:
            _TOKEN_CACHE.pop(self._key, None)


# Asking for a token twice is harmless.
TOKEN_ENDPOINT: Endpoint[dict[str, Any]] = Endpoint("POST", "{token_path}", idempotent=True)


@dataclass
class Service:
    """Where and how to reach one remote service, resolved from one Airflow connection."""

    name: str
    base_url: str
    auth: Auth
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=10.0))
    verify: bool = True
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    # How long to keep looking for what an ambiguous create may have created (connection extra
    # ``adoption_window``); None: the read timeout + 30 s, so that a server acting as late as a
    # timed-out answer (and then some) is still found.
    adoption_window: float | None = None
    # How this service spells an error answer (each package defines its own, in its errors.py).
    parse_error: Callable[[httpx.Response], ErrorBody] = generic_error_body

    def adopt_window(self) -> float:
        if self.adoption_window is not None:
            return self.adoption_window
        return float(self.timeout.read or 30.0) + ADOPTION_MARGIN_S

    def client_key(self) -> tuple[Any, ...]:
        t = self.timeout
        return (self.base_url, t.connect, t.read, t.write, t.pool, self.verify)

    def call(
        self,
        endpoint: Endpoint[T],
        *,
        path: Mapping[str, Any] | None = None,
        path_template: str | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        kind: Kind | None = None,
        policy: RetryPolicy | None = None,
    ) -> Call[T]:
        """Send one request to ``endpoint`` with retries, and return its decoded answer.

        ``kind`` overrides the endpoint's own (a create made idempotent by a key the caller sends);
        ``policy`` overrides the connection's retry budget (a cancel with a bounded budget).
        """
        auth = self.auth if auth is None else auth
        rendered = path_template if path_template is not None else encode_path(endpoint.path, path or {})
        params = {**endpoint.query, **{k: v for k, v in (query or {}).items() if v is not None}}
        params = {k: ("true" if v is True else "false" if v is False else v) for k, v in params.items()}
        method = endpoint.method
        kind = endpoint.kind if kind is None else kind
        policy = self.retry if policy is None else policy
        started = time.monotonic()
        attempt = 0
        refreshed = False

        def fail(cls: type[errors.ApiError], message: str, **kw: Any) -> errors.ApiError:
            return cls(message, method=method, path=rendered, service=self.name, **kw)

        while True:
            attempt += 1
            auth_headers = yield from auth.headers(self)
            request = httpx.Request(
                method,
                self.base_url + rendered,
                params=params or None,
                json=json,
                data=data,
                content=content,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "application/json",
                    **self.extra_headers,
                    **(headers or {}),
                    **auth_headers,
                },
            )
            reply = yield request
            if reply is None:
                raise RuntimeError("the call's driver sent no reply for a request")
            failure: Any = reply
            info: dict[str, Any] = {}
            if isinstance(reply, BaseException):
                if not isinstance(reply, httpx.TransportError):
                    raise reply
                # Never the library's own text where it can quote a header (a credential).
                reason = describe_failure(reply)
                ambiguous = f"no answer, the request may have been processed ({reason})"
                give_up: errors.ApiError = fail(errors.TransportError, f"gave up after {attempt} attempts ({reason})")
                status_text = reason
                status: int | None = None
            else:
                status = reply.status_code
                if status == 401 and auth.refreshable and not refreshed:
                    refreshed = True
                    auth.invalidate()
                    log.warning("%s %s %s -> 401; refreshing the token once", self.name, method, rendered)
                    continue
                if 200 <= status < 300:
                    try:
                        return endpoint.read(reply)
                    except ValueError as exc:  # not JSON, or (pydantic.ValidationError) not the schema
                        problem = (
                            f"response does not match the expected schema: {_short_validation(exc)}"
                            if isinstance(exc, pydantic.ValidationError) and not _not_json(exc)
                            else "a body that is not JSON"
                        )
                        failure = MalformedBody(status)
                        status_text = f"HTTP {status} with {problem}"
                        ambiguous = f"HTTP {status} with {problem}; the request may have been processed"
                        give_up = fail(errors.ServerError, f"{problem} (after {attempt} attempts)", status=status)
                else:
                    said = self.parse_error(reply)
                    message, info = said.message, said.fields()
                    cls = said.error_class or errors.error_class_for_status(status)
                    give_up = fail(cls, message, status=status, **info)
                    ambiguous = f"HTTP {status}; the request may have been processed ({message})"
                    status_text = f"HTTP {status}"
            decision = decide(failure, attempt=attempt, kind=kind, policy=policy, started=started)
            if decision.action is Action.AMBIGUOUS:
                raise fail(errors.AmbiguousRequestError, ambiguous, status=status, **info) from None
            if decision.action is Action.FAIL:
                if decision.why == "unsendable":
                    raise fail(errors.InvalidRequestError, status_text) from None
                raise give_up from None
            asked = ""
            if decision.retry_after is not None:
                asked = (
                    f" (Retry-After {decision.retry_after:g}s asked, capped at {policy.retry_after_cap:g}s)"
                    if decision.capped
                    else " (Retry-After)"
                )
            log.warning(
                "%s %s %s -> %s; retry %d/%d in %.2fs%s",
                self.name,
                method,
                rendered,
                status_text,
                attempt,
                policy.max_attempts - 1,
                decision.wait,
                asked,
            )
            yield Sleep(decision.wait)


def _not_json(exc: pydantic.ValidationError) -> bool:
    """Pydantic's way of saying a body parsed with ``validate_json`` is not JSON at all."""
    return any(detail["type"] == "json_invalid" for detail in exc.errors())


def _short_validation(exc: pydantic.ValidationError) -> str:
    details = exc.errors()
    if not details:
        return str(exc)
    loc = ".".join(str(p) for p in details[0]["loc"])
    return f"{loc}: {details[0]['msg']} ({exc.error_count()} error(s))"


def run_sync(client: httpx.Client, call: Call[T]) -> T:
    """Execute a call with a sync client."""
    reply: Reply = None
    try:
        while True:
            step = call.send(reply)
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = client.send(step)
            except httpx.TransportError as exc:
                reply = exc
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# Requests in flight at once per event loop: beyond this they queue here, so the clients' pools stay
# small (httpcore walks every pooled connection on each request: a big pool makes each one dearer).
MAX_IN_FLIGHT_PER_LOOP = 8
_IN_FLIGHT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def in_flight_limit() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    limit = _IN_FLIGHT.get(loop)
    if limit is None:
        limit = _IN_FLIGHT[loop] = asyncio.Semaphore(MAX_IN_FLIGHT_PER_LOOP)
    return limit


async def run_async(client: httpx.AsyncClient, call: Call[T]) -> T:
    """Execute a call with an async client, at most ``MAX_IN_FLIGHT_PER_LOOP`` requests at once per loop."""
    reply: Reply = None
    limit = in_flight_limit()
    try:
        while True:
            step = call.send(reply)
            # The call has read the response: drop it, so a waiting trigger holds no response body.
            reply = None
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                continue
            try:
                async with limit:
                    reply = await client.send(step)
            except httpx.TransportError as exc:
                reply = exc
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """One TLS context per process and setting, shared by every client: building one loads the
    whole CA bundle (~40 ms of CPU), which a client per call would pay on every call. The CA
    bundle (``SSL_CERT_FILE``, ``SSL_CERT_DIR`` or certifi's) is read when first needed."""
    return httpx.create_ssl_context(verify=verify)


def new_sync_client(service: Service, *, max_timeout: float | None = None) -> httpx.Client:
    """A sync client for ``service``; ``max_timeout`` caps every timeout (a cancel on a budget)."""
    timeout = service.timeout
    if max_timeout is not None:
        t = timeout
        timeout = httpx.Timeout(
            connect=min(t.connect or max_timeout, max_timeout),
            read=min(t.read or max_timeout, max_timeout),
            write=min(t.write or max_timeout, max_timeout),
            pool=min(t.pool or max_timeout, max_timeout),
        )
    return httpx.Client(timeout=timeout, verify=tls_context(service.verify), follow_redirects=True)


def within(call: Call[T], budget: float, *, what: str) -> Call[T]:
    """``call``, given up once ``budget`` seconds are spent: a retry wait that would end past the
    budget is not taken. Bounds a cancel (a kill, a timeout) that the full retry policy would stretch
    to minutes."""
    end = time.monotonic() + budget
    reply: Reply = None
    try:
        while True:
            step = call.send(reply)
            if isinstance(step, Sleep) and time.monotonic() + step.seconds > end:
                call.close()
                raise errors.TransportError(
                    f"{what}: gave up within its {budget:g}s budget (the next retry was {step.seconds:.1f}s away)"
                )
            reply = yield step
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# One AsyncClient per (event loop, service address): thousands of triggers on one triggerer share
# one connection pool instead of opening a connection per poll. Clients carry no credentials.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_async_client(service: Service) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _ASYNC_CLIENTS.setdefault(loop, {})
    key = service.client_key()
    client = per_loop.get(key)
    if client is None or client.is_closed:
        client = per_loop[key] = httpx.AsyncClient(
            timeout=service.timeout,
            verify=tls_context(service.verify),
            follow_redirects=True,
            limits=httpx.Limits(
                max_connections=MAX_IN_FLIGHT_PER_LOOP, max_keepalive_connections=MAX_IN_FLIGHT_PER_LOOP
            ),
        )
    return client


def paged(
    fetch: Callable[[str | None], Call[tuple[list[T], str | None]]],
) -> Generator[Callable[[], Call[tuple[list[T], str | None]]], tuple[list[T], str | None], None]:
    """Page-token bookkeeping shared by every list endpoint, for any driver.

    Yields thunks that produce the call for the next page; the caller runs each (sync or async,
    or with ``yield from`` inside another call) and sends back ``(items, next_token)``.
    Refuses a token the server already handed out, which would otherwise loop forever.
    """
    token: str | None = None
    seen: set[str] = set()
    while True:
        _, next_token = yield functools.partial(fetch, token)
        if not next_token:
            return
        if next_token in seen:
            raise errors.ServerError(f"the service repeated page token {next_token!r}; stopping to avoid a loop")
        seen.add(next_token)
        token = next_token


def find_first(
    fetch: Callable[[str | None], Call[tuple[list[T], str | None]]], predicate: Callable[[T], bool]
) -> Call[T | None]:
    """Walk the pages of a list endpoint and stop at the first item matching ``predicate``."""
    pages = paged(fetch)
    try:
        thunk = next(pages)
        while True:
            page = yield from thunk()
            for item in page[0]:
                if predicate(item):
                    pages.close()
                    return item
            thunk = pages.send(page)
    except StopIteration:
        return None


def iterate(run: Callable[[Call[Any]], Any], fetch: Callable[[str | None], Call[tuple[list[T], str | None]]]):  # type: ignore[no-untyped-def]
    """Lazily yield every item of a list endpoint, fetching pages with the sync runner ``run``."""
    pages = paged(fetch)
    thunk = next(pages)
    while True:
        page = run(thunk())
        yield from page[0]
        try:
            thunk = pages.send(page)
        except StopIteration:
            return
