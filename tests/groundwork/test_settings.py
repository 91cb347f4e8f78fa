"""Every setting with a wrong value: one line naming METER_X, what is wrong and what is
expected; the CLI prints it with exit status 2 and no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from groundwork.settings import Settings, SettingsError, load_settings

# One wrong value for every setting that can be wrong.
WRONG: dict[str, str] = {
    "kafka_bootstrap": "localhost",
    "kafka_partitions": "0",
    "kafka_replication": "two",
    "kafka_version": "latest",
    "kafka_controller_port": "70000",
    "kafka_heap": "lots",
    "topic_prefix": "my prefix/",
    "clickhouse_url": "clickhouse.internal:8123",
    "clickhouse_database": "meter; DROP TABLE x",
    "worker_id": "",
    "worker_instance": "host/one",
    "worker_web_port": "-1",
    "worker_batch_max": "0",
    "worker_session_timeout_ms": "1000",
    "worker_transaction_timeout_ms": "500",
    "worker_align_idle_ms": "-5",
    "worker_align_lag_wait_ms": "soon",
    "api_host": "local host",
    "api_port": "http",
    "api_token": "",
    "api_stale_after_s": "0",
    "api_workers": "0",
    "api_stale_policy": "fail_sometimes",
    "dashboard_host": "",
    "dashboard_port": "99999",
    "sink_host": "a b",
    "sink_port": "7071.5",
    "alerts_metrics_port": "x",
    "smtp_host": "",
    "smtp_port": "0",
    "smtp_starttls": "perhaps",
    "smtp_from": "meter",
    "delivery_allow_hosts": "[127.0.0.1",
    "delivery_timeout_s": "-1",
    "delivery_max_attempts": "0",
    "delivery_backoff_base_s": "0",
    "delivery_backoff_max_s": "never",
    "delivery_retry_after_max_s": "-3",
    "alerts_group_id": "",
    "alerts_max_in_flight": "0",
    "alerts_collapse_wait_s": "-1",
    "alerts_metrics_host": "0.0.0.0/0",
}
# Settings where any text is a valid value (paths, the SMTP login).
FREE_TEXT = {"data_dir", "cache_dir", "chdb_path", "smtp_username", "smtp_password"}

ONE_PROBLEM = re.compile(r"^METER_[A-Z_]+: .+ \(got .*\); expected .+$")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("METER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout


def test_every_setting_has_a_wrong_value_here_or_takes_any_text() -> None:
    assert set(WRONG) | FREE_TEXT == set(Settings.model_fields)
    assert not set(WRONG) & FREE_TEXT


@pytest.mark.parametrize("field", sorted(WRONG))
def test_a_wrong_value_is_one_line_naming_the_variable(
        field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "METER_" + field.upper()
    monkeypatch.setenv(name, WRONG[field])
    with pytest.raises(SettingsError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert "\n" not in problem
    assert problem.startswith(name), problem
    if field != "worker_transaction_timeout_ms":  # the rule across two settings says both
        assert ONE_PROBLEM.match(problem), problem
        assert repr(WRONG[field]) in problem


def test_the_timeout_rule_names_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METER_WORKER_TRANSACTION_TIMEOUT_MS", "20000")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert "METER_WORKER_SESSION_TIMEOUT_MS" in problem and "20000" in problem


def test_two_wrong_settings_are_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METER_API_PORT", "http")
    monkeypatch.setenv("METER_SMTP_STARTTLS", "perhaps")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert sorted(p.split(":")[0] for p in caught.value.problems) == [
        "METER_API_PORT", "METER_SMTP_STARTTLS"]


@pytest.mark.parametrize("value, hosts", [
    ("127.0.0.1", ["127.0.0.1"]),
    ("127.0.0.1,hooks.internal", ["127.0.0.1", "hooks.internal"]),
    (" 127.0.0.1 , hooks.internal ,", ["127.0.0.1", "hooks.internal"]),
    ('["127.0.0.1", "hooks.internal"]', ["127.0.0.1", "hooks.internal"]),
    ("", []),
])
def test_list_settings_take_comma_separated_values_or_json(
        value: str, hosts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METER_DELIVERY_ALLOW_HOSTS", value)
    assert load_settings().delivery_allow_hosts == hosts


def test_the_defaults_are_valid() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"


@pytest.mark.parametrize("name, value", [
    ("METER_DELIVERY_ALLOW_HOSTS", "[127.0.0.1"),
    ("METER_KAFKA_PARTITIONS", "x"),
    ("METER_API_STALE_POLICY", "maybe"),
    ("METER_WORKER_TRANSACTION_TIMEOUT_MS", "20000"),
])
def test_the_cli_prints_one_error_line_and_exits_2(name: str, value: str,
                                                   tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METER_")}
    env[name] = value
    result = subprocess.run([sys.executable, "-m", "meter.cli_entry", "kafka", "status"],
                            env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {name}"), lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_comma_separated_list_works_in_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METER_")}
    env["METER_DELIVERY_ALLOW_HOSTS"] = "127.0.0.1,hooks.internal"
    env["METER_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"  # nothing answers: exit 1, not 2
    result = subprocess.run([sys.executable, "-m", "meter.cli_entry", "kafka", "status"],
                            env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert "not answering" in result.stderr
