"""workspace-meter: usage metering and quotas on Kafka, Faust and ClickHouse."""

__version__ = "0.1.0"
