"""Everything the alerting consumer is tuned by, in one frozen value.

It all comes from ``groundwork.settings.Settings``; ``load`` takes overrides (the CLI's
options, tests' short backoffs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from groundwork.settings import Settings


@dataclass(frozen=True)
class AlertingConfig:
    """What the consumer and its channels need; build with ``AlertingConfig.load``."""

    settings: Settings
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0
    group_id: str = "meter-alerts"
    max_in_flight: int = 256
    collapse_wait_s: float = 10.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = field(default=None)

    @classmethod
    def load(cls, settings: Settings, **overrides: object) -> AlertingConfig:
        values: dict[str, object] = {
            "backoff_base_s": settings.delivery_backoff_base_s,
            "backoff_max_s": settings.delivery_backoff_max_s,
            "retry_after_max_s": settings.delivery_retry_after_max_s,
            "group_id": settings.alerts_group_id,
            "max_in_flight": settings.alerts_max_in_flight,
            "collapse_wait_s": settings.alerts_collapse_wait_s,
            "metrics_host": settings.alerts_metrics_host,
            "metrics_port": settings.alerts_metrics_port,
        }
        values.update(overrides)
        return cls(settings=settings, **values)  # type: ignore[arg-type]

    @property
    def allow_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.settings.delivery_allow_hosts if h.strip())
