"""The page shell (pure): head, stylesheet, top bar, footer."""

from __future__ import annotations

from dashboard.html import esc

STYLESHEET = "/static/dashboard.css"
FAVICON = "/static/favicon.svg"


def page(title: str, body: str, *, crumbs: list[tuple[str, str | None]] | None = None,
         footer: str = "") -> str:
    """A whole HTML document. ``crumbs``: (text, href or None for the current page)."""
    trail = ""
    for text, href in crumbs or []:
        trail += '<span class="sep">/</span>'
        trail += f'<a href="{esc(href)}">{esc(text)}</a>' if href else f"<span>{esc(text)}</span>"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Meter</title>"
        f'<link rel="icon" href="{FAVICON}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{STYLESHEET}">'
        "</head><body>"
        '<header class="topbar"><div class="wrap topbar-inner">'
        '<a class="brand" href="/"><span class="logo" aria-hidden="true"></span>Meter'
        '<span class="brand-sub">usage</span></a>'
        f'<nav class="crumbs">{trail}</nav></div></header>'
        f'<main class="wrap">{body}</main>'
        f'<footer class="wrap footer">{footer}</footer>'
        "</body></html>\n"
    )
