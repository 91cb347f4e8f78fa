"""Topics for one benchmark run: created under the run's own prefix, deleted when the
run's process exits (a shared dev broker otherwise gathers every run's partitions)."""

from __future__ import annotations

import atexit
import sys

from deploy.topics import create_topics, delete_topics
from groundwork.errors import UserError
from groundwork.settings import Settings


def throwaway_topics(settings: Settings) -> None:
    """``create_topics`` now, ``delete_topics`` at exit (a failure to delete is said)."""
    create_topics(settings)
    atexit.register(_delete, settings)


def _delete(settings: Settings) -> None:
    try:
        delete_topics(settings)
    except UserError as exc:
        print(f"topics of {settings.topic_prefix} left on the broker: {exc}", file=sys.stderr)
