"""workspace-meter: usage metering and quotas on Kafka and ClickHouse."""

__version__ = "0.1.0"
