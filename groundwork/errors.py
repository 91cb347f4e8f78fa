"""Errors that are the user's to fix: the CLI prints their message, not a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""
