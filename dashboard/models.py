"""Which AI models count as "large" (pure; used by the model-choice hint and badges).

A model is large when its name (case-insensitive, without the provider) matches
``LARGE_PATTERN`` and not ``SMALL_PATTERN``. The lists are deliberately plain so a
reader can check a name by eye:

- large: ``opus``, ``gpt-4*`` and ``gpt-5*`` (incl. ``gpt-4o``, ``gpt-4.1``), ``o1``, ``o3``,
  ``*-pro`` (``gemini-2.5-pro``), ``ultra``, ``large`` (``mistral-large``),
  ``command-r-plus``, and open models of 65 B parameters or more (``llama-3.1-70b``,
  ``405b``);
- small (wins over large): ``mini``, ``nano``, ``haiku``, ``flash``, ``small``, ``lite``,
  ``tiny``, ``embed`` (embedding models) and open models under 65 B (``8b``, ``7b``,
  ``32b``).

``sonnet`` and other mid-size names are not large.
"""

from __future__ import annotations

import re
from typing import Final

LARGE_PATTERN: Final = re.compile(
    r"opus|gpt-?[45]|(^|[^a-z0-9])o[13]($|[^a-z0-9])|-pro\b|ultra|large|command-r-plus"
    r"|(^|[^0-9.])(6[5-9]|[7-9][0-9]|[1-9][0-9]{2,})b\b",
    re.IGNORECASE,
)
SMALL_PATTERN: Final = re.compile(
    r"(?<![a-z])mini|nano|haiku|flash|small|lite|tiny|embed|(^|[^0-9.])([1-9]|[1-5][0-9]|6[0-4])(\.[0-9])?b\b",
    re.IGNORECASE,
)


def is_large(model: str) -> bool:
    """True for a model name on the large list and not on the small one."""
    name = model.rpartition("/")[2] if "/" in model else model
    return bool(LARGE_PATTERN.search(name)) and not SMALL_PATTERN.search(name)
