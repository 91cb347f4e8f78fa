"""The documented large-model list."""

from __future__ import annotations

import pytest

from dashboard.models import is_large


@pytest.mark.parametrize("name", [
    "claude-opus-4", "gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "gemini-2.5-pro",
    "mistral-large-latest", "llama-3.1-70b", "llama-3.1-405b-instruct", "command-r-plus",
    "openai/gpt-4o",
])
def test_large_models(name: str) -> None:
    assert is_large(name)


@pytest.mark.parametrize("name", [
    "claude-3-5-sonnet", "claude-3-haiku", "gpt-4o-mini", "gpt-4.1-nano", "gpt-5-mini",
    "o3-mini", "gemini-2.0-flash", "mistral-small", "llama-3.1-8b", "qwen2.5-32b",
    "command-r", "gpt-3.5-turbo", "text-embedding-3-large", "deepseek-v3",
])
def test_not_large_models(name: str) -> None:
    assert not is_large(name)
