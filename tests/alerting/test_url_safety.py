"""S13: https only, no private/loopback/link-local destinations, except allow-listed hosts."""

from __future__ import annotations

import pytest

from alerting.url_safety import UnsafeUrl, check_addresses, check_url


def test_https_to_a_public_host_is_fine() -> None:
    target = check_url("https://hooks.example.com/x?token=1", ())
    assert (target.host, target.port, target.allow_listed) == ("hooks.example.com", 443, False)


@pytest.mark.parametrize(("url", "why"), [
    ("http://hooks.example.com/x", "must use https"),
    ("ftp://hooks.example.com/x", "scheme must be https"),
    ("not a url", "scheme must be https"),
    ("https:///nohost", "no host"),
    ("https://127.0.0.1/x", "loopback"),
    ("https://10.1.2.3/x", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::1]/x", "loopback"),
    ("https://[::ffff:10.0.0.1]/x", "private"),
    ("https://0.0.0.0/x", "unspecified"),
])
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url(url, ())


def test_allow_listed_hosts_may_use_http_and_loopback() -> None:
    target = check_url("http://127.0.0.1:8081/hook", ("127.0.0.1",))
    assert target.allow_listed and target.port == 8081
    check_addresses("127.0.0.1", ["127.0.0.1"], ("127.0.0.1",))


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    public = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    check_addresses("hooks.example.com", public, ())
    for addresses in (["10.0.0.5"], ["93.184.215.14", "192.168.1.1"], ["fe80::1%eth0"], []):
        with pytest.raises(UnsafeUrl):
            check_addresses("hooks.example.com", addresses, ())


def test_allow_listing_an_address_does_not_allow_names_that_resolve_to_it() -> None:
    with pytest.raises(UnsafeUrl, match="loopback"):
        check_addresses("localhost", ["127.0.0.1"], ("127.0.0.1",))
