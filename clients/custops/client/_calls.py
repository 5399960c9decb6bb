"""How the generated service methods call: one retry loop, pagers, streams.

`_services.py` (generated from the contracts) declares each RPC as a
`Method` and calls `_unary`, `_pager` or `_stream` here; nothing in this
module knows a method by name.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from custops.client._errors import CustopsError
from custops.client._retry import Attempts, RetryPolicy

Metadata = Sequence[tuple[str, str]]
Item = TypeVar("Item")
Page = TypeVar("Page")
Request = TypeVar("Request")
Response = TypeVar("Response")


class Retry(enum.Enum):
    """Whether a failed call may be tried again, as its contract says."""

    ALWAYS = "always"  # idempotency_level NO_SIDE_EFFECTS or IDEMPOTENT
    WITH_REQUEST_ID = "with_request_id"  # the server answers a repeated id with the first result
    NEVER = "never"  # a side effect the server cannot recognise twice, or a stream


@dataclass(frozen=True)
class Method(Generic[Request, Response]):
    path: str
    request: type[Request]
    response: type[Response]
    retry: Retry
    items: str = ""  # a list call's repeated field


def deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old}() is deprecated and goes in the next release: use {new}()",
        DeprecationWarning,
        stacklevel=3,
    )


def _retried(method: Method[Any, Any], request: Any, fill_request_id: bool) -> bool:
    """May this call be tried again? Fills in a missing request id first
    (written into the caller's message, so sending it again is safe too)."""
    if method.retry is Retry.WITH_REQUEST_ID:
        if fill_request_id and not request.request_id:
            request.request_id = uuid.uuid4().hex
        return bool(request.request_id)
    return method.retry is Retry.ALWAYS


class _Channel:
    def __init__(
        self,
        channel: Any,
        timeout: float,
        retry: RetryPolicy,
        metadata: Metadata,
        fill_request_ids: bool,
    ) -> None:
        self._channel, self._timeout, self._retry = channel, timeout, retry
        self._metadata, self._fill = tuple(metadata), fill_request_ids
        self._callables: dict[tuple[str, bool], Any] = {}

    def _callable(self, method: Method[Any, Any], stream: bool = False) -> Any:
        """The channel's callable of `method`, made once: unary, or a server stream."""
        key = (method.path, stream)
        found = self._callables.get(key)
        if found is None:
            make = self._channel.unary_stream if stream else self._channel.unary_unary
            found = self._callables[key] = make(
                method.path,
                request_serializer=method.request.SerializeToString,
                response_deserializer=method.response.FromString,
            )
        return found

    def _open_stream(
        self, method: Method[Any, Any], request: Any, timeout: float | None, metadata: Metadata
    ) -> Any:
        # As long as there is to send: no deadline unless the caller gives one.
        return self._callable(method, stream=True)(
            request, timeout=timeout, metadata=(*self._metadata, *metadata)
        )

    def _attempts(
        self, method: Method[Any, Response], request: Any, timeout: float | None, fill: bool
    ) -> Attempts:
        retried = _retried(method, request, fill and self._fill)
        return Attempts(self._retry if retried else None, timeout or self._timeout)


class Caller(_Channel):
    """The blocking calls of one service."""

    def _unary(
        self,
        method: Method[Any, Response],
        request: Any,
        timeout: float | None,
        metadata: Metadata,
        fill_request_id: bool = True,
    ) -> Response:
        call = self._callable(method)
        attempts = self._attempts(method, request, timeout, fill_request_id)
        together = (*self._metadata, *metadata)
        while True:
            try:
                answer: Response = call(request, timeout=attempts.timeout(), metadata=together)
                return answer
            except grpc.RpcError as exc:
                error = CustopsError.from_rpc_error(exc)
                pause = attempts.pause_before_retry(error)
                if pause is None:
                    raise error from exc
                time.sleep(pause)

    def _pager(
        self, method: Method[Any, Response], request: Any, timeout: float | None, metadata: Metadata
    ) -> Pager[Any, Any]:
        return Pager(lambda page: self._unary(method, page, timeout, metadata), request, method)

    def _stream(
        self, method: Method[Any, Response], request: Any, timeout: float | None, metadata: Metadata
    ) -> Iterator[Any]:
        return _errors_raised(self._open_stream(method, request, timeout, metadata))


class AsyncCaller(_Channel):
    """The asyncio calls of one service."""

    async def _unary(
        self,
        method: Method[Any, Response],
        request: Any,
        timeout: float | None,
        metadata: Metadata,
        fill_request_id: bool = True,
    ) -> Response:
        call = self._callable(method)
        attempts = self._attempts(method, request, timeout, fill_request_id)
        together = (*self._metadata, *metadata)
        while True:
            try:
                answer: Response = await call(
                    request, timeout=attempts.timeout(), metadata=together
                )
                return answer
            except grpc.RpcError as exc:
                error = CustopsError.from_rpc_error(exc)
                pause = attempts.pause_before_retry(error)
                if pause is None:
                    raise error from exc
                await asyncio.sleep(pause)

    def _pager(
        self, method: Method[Any, Response], request: Any, timeout: float | None, metadata: Metadata
    ) -> AsyncPager[Any, Any]:
        return AsyncPager(
            lambda page: self._unary(method, page, timeout, metadata), request, method
        )

    def _stream(
        self, method: Method[Any, Response], request: Any, timeout: float | None, metadata: Metadata
    ) -> AsyncIterator[Any]:
        return _async_errors_raised(self._open_stream(method, request, timeout, metadata))


def _errors_raised(responses: Any) -> Iterator[Any]:
    try:
        yield from responses
    except grpc.RpcError as exc:
        raise CustopsError.from_rpc_error(exc) from exc


async def _async_errors_raised(responses: Any) -> AsyncIterator[Any]:
    try:
        async for response in responses:
            yield response
    except grpc.RpcError as exc:
        raise CustopsError.from_rpc_error(exc) from exc


def _next_request(method: Method[Any, Any], request: Any, page: Any) -> Any:
    """The request for the page after `page`, or None after the last."""
    if not page.next_page_token:
        return None
    following = method.request()
    following.CopyFrom(request)
    following.page_token = page.next_page_token
    return following


class Pager(Generic[Item, Page]):
    """Every item of a list call, fetching pages as they are needed (each page
    with the call's retries). `pages` gives the responses themselves."""

    def __init__(
        self, fetch: Callable[[Any], Page], request: Any, method: Method[Any, Any]
    ) -> None:
        self._fetch, self._request, self._method = fetch, request, method

    def first_page(self) -> Page:
        """The response to the request as given: one call, one page."""
        return self._fetch(self._request)

    @property
    def pages(self) -> Iterator[Page]:
        request = self._request
        while request is not None:
            page = self._fetch(request)
            yield page
            request = _next_request(self._method, request, page)

    def __iter__(self) -> Iterator[Item]:
        for page in self.pages:
            yield from getattr(page, self._method.items)


class AsyncPager(Generic[Item, Page]):
    """`async for item in pager`; `pager.pages` gives the responses."""

    def __init__(self, fetch: Callable[[Any], Any], request: Any, method: Method[Any, Any]) -> None:
        self._fetch, self._request, self._method = fetch, request, method

    async def first_page(self) -> Page:
        """The response to the request as given: one call, one page."""
        page: Page = await self._fetch(self._request)
        return page

    @property
    def pages(self) -> AsyncIterator[Page]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[Page]:
        request = self._request
        while request is not None:
            page = await self._fetch(request)
            yield page
            request = _next_request(self._method, request, page)

    async def __aiter__(self) -> AsyncIterator[Item]:
        async for page in self.pages:
            for item in getattr(page, self._method.items):
                yield item
