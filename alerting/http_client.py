"""POSTing JSON to delivery URLs, under S13 (aiohttp).

The session's resolver resolves a host once, checks every address with
``url_safety.check_addresses`` and hands aiohttp exactly those addresses, so
the connection goes to the address that was checked (no DNS rebinding); the
Host header and TLS SNI stay the host name. Literal IP hosts never reach a
resolver and are checked by ``url_safety.check_url``. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from alerting.retry import AttemptResult, classify_http
from alerting.url_safety import UnsafeUrl, check_addresses, check_url


class CheckedResolver(AbstractResolver):
    """Resolves with the system resolver and refuses unsafe addresses (``UnsafeUrl``)."""

    def __init__(self, allow_hosts: frozenset[str]) -> None:
        self._allow_hosts = allow_hosts

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        addresses = [str(info[4][0]) for info in infos]
        check_addresses(host, addresses, self._allow_hosts)
        return [ResolveResult(hostname=host, host=str(info[4][0]), port=int(info[4][1]),
                              family=info[0], proto=info[2], flags=socket.AI_NUMERICHOST)
                for info in infos]

    async def close(self) -> None:
        return None


def _refusal(exc: BaseException) -> UnsafeUrl | None:
    """The ``UnsafeUrl`` inside an aiohttp connection error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UnsafeUrl):
            return seen
        inner = getattr(seen, "os_error", None)
        seen = inner if isinstance(inner, BaseException) and inner is not seen else (
            seen.__cause__ or seen.__context__)
    return None


class HttpSender:
    """One shared session; ``post_json`` never raises for delivery problems."""

    def __init__(self, allow_hosts: frozenset[str], timeout_s: float,
                 user_agent: str = "workspace-meter-alerts/1") -> None:
        self._allow_hosts = allow_hosts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSender:
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(self._allow_hosts),
                                         limit=0, ttl_dns_cache=10, family=socket.AF_UNSPEC)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              trust_env=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check(self, url: str) -> None:
        """Raise ``UnsafeUrl`` if ``url`` itself is refused (scheme, literal address)."""
        check_url(url, self._allow_hosts)

    async def post_json(self, url: str, body: bytes,
                        headers: Mapping[str, str] | None = None) -> AttemptResult:
        assert self._session is not None, "use HttpSender as an async context manager"
        try:
            check_url(url, self._allow_hosts)
        except UnsafeUrl as exc:
            return AttemptResult.permanent(str(exc))
        all_headers: dict[str, Any] = {"Content-Type": "application/json",
                                       "User-Agent": self._user_agent}
        all_headers.update(headers or {})
        try:
            async with self._session.post(url, data=body, headers=all_headers,
                                          allow_redirects=False) as response:
                excerpt = (await response.content.read(200)).decode("utf-8", "replace")
                return classify_http(response.status, response.headers.get("Retry-After"),
                                     time.time(), " ".join(excerpt.split()))
        except UnsafeUrl as exc:
            return AttemptResult.permanent(str(exc))
        except TimeoutError:
            return AttemptResult.retryable("timed out")
        except aiohttp.ClientError as exc:
            refusal = _refusal(exc)
            if refusal is not None:
                return AttemptResult.permanent(str(refusal))
            return AttemptResult.retryable(_describe(exc))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return AttemptResult.retryable(f"connection error: {reason}")


def _describe(exc: aiohttp.ClientError) -> str:
    """A short reason without the URL (which may carry secrets)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection error: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return f"connection error: {type(exc).__name__}"
