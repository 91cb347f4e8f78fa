"""S13 delivery URL safety, as pure decisions.

``check_url`` looks at the URL alone (scheme, host, literal addresses);
``check_addresses`` decides on the addresses a host name resolved to. The HTTP
client resolves once, asks ``check_addresses`` and connects to exactly those
addresses (see ``alerting.http_client``), so DNS rebinding cannot slip in.
Hosts on the allow-list may use http and private addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """The URL may not be delivered to; the message says why (without secrets)."""


class Target(NamedTuple):
    scheme: str
    host: str
    port: int
    allow_listed: bool
    literal_ip: bool


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_problem(address: IpAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_problem(address.ipv4_mapped)
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("private", address.is_private), ("reserved", address.is_reserved))
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        return "not globally routable"
    return None


def check_url(url: str, allow_hosts: Iterable[str]) -> Target:
    """The delivery target of ``url``; raises ``UnsafeUrl`` when S13 forbids it."""
    allowed = {h.lower() for h in allow_hosts}
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"invalid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl(f"invalid URL: scheme must be https, got {scheme or 'none'!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UnsafeUrl("invalid URL: no host")
    allow_listed = host in allowed
    if scheme != "https" and not allow_listed:
        raise UnsafeUrl(f"refused: {host} is not on the delivery allow-list, so the URL "
                        "must use https")
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not allow_listed:
        problem = address_problem(literal)
        if problem:
            raise UnsafeUrl(f"refused: {host} is a {problem} address")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), allow_listed,
                  literal is not None)


def check_addresses(host: str, addresses: Iterable[str], allow_hosts: Iterable[str]) -> None:
    """Raise ``UnsafeUrl`` unless every address ``host`` resolved to may be connected to."""
    if host.lower().rstrip(".") in {h.lower() for h in allow_hosts}:
        return
    resolved = list(addresses)
    if not resolved:
        raise UnsafeUrl(f"refused: {host} resolved to no address")
    for text in resolved:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        problem = address_problem(address)
        if problem:
            raise UnsafeUrl(f"refused: {host} resolves to {problem} address {address}")
