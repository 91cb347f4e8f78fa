"""Tiny HTML building helpers (pure): escaping, links with query strings."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import urlencode


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def url(path: str, params: Mapping[str, str | int | None], anchor: str = "") -> str:
    """``path?k=v...#anchor`` with ``None`` values left out (not escaped for HTML)."""
    query = urlencode([(k, str(v)) for k, v in params.items() if v is not None])
    return path + (f"?{query}" if query else "") + (f"#{anchor}" if anchor else "")


def link(href: str, text: str, cls: str = "", title: str = "") -> str:
    extra = (f' class="{esc(cls)}"' if cls else "") + (f' title="{esc(title)}"' if title else "")
    return f'<a href="{esc(href)}"{extra}>{text}</a>'


def num(text: str, exact: str) -> str:
    """A readable number with its exact value as a tooltip."""
    return f'<span class="num" title="{esc(exact)}">{esc(text)}</span>'
