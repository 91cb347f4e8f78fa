"""Each workspace's alert channels: the latest ``alerting.settings`` and plan owners (pure).

Both topics are compacted and keyed by workspace; a tombstone clears. Email is
on unless a workspace's settings say ``email: false``.
"""

from __future__ import annotations

from typing import NamedTuple

from alerting.records import Channel
from schemas.events import AlertSettingsEvent, Mute, PlanEvent


class WorkspaceChannels(NamedTuple):
    email: bool = True
    owners: tuple[str, ...] = ()
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    muted: frozenset[Mute] = frozenset()
    muted_forecasts: frozenset[str] = frozenset()  # quotas whose forecast alerts are muted

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels a crossing of this workspace goes to, in a fixed order."""
        enabled: list[Channel] = []
        if self.email:
            enabled.append("email")
        if self.slack_webhook_url:
            enabled.append("slack")
        if self.webhook_url:
            enabled.append("webhook")
        return tuple(enabled)


class Directory:
    def __init__(self) -> None:
        self._settings: dict[str, AlertSettingsEvent] = {}
        self._owners: dict[str, tuple[str, ...]] = {}
        self.updates = 0  # grows with every applied record (tests wait on it)

    def apply_settings(self, workspace_id: str, event: AlertSettingsEvent | None) -> None:
        if event is None:
            self._settings.pop(workspace_id, None)
        else:
            self._settings[workspace_id] = event
        self.updates += 1

    def apply_plan(self, workspace_id: str, event: PlanEvent | None) -> None:
        if event is None:
            self._owners.pop(workspace_id, None)
        else:
            self._owners[workspace_id] = tuple(event.owners)
        self.updates += 1

    def channels(self, workspace_id: str) -> WorkspaceChannels:
        owners = self._owners.get(workspace_id, ())
        settings = self._settings.get(workspace_id)
        if settings is None:
            return WorkspaceChannels(owners=owners)
        return WorkspaceChannels(
            email=settings.email is not False,
            owners=owners,
            slack_webhook_url=settings.slack_webhook_url,
            webhook_url=settings.webhook_url,
            webhook_secret=settings.webhook_secret,
            muted=frozenset(settings.muted),
            muted_forecasts=frozenset(settings.muted_forecasts),
        )
