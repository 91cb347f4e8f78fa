"""`meter dashboard` registration and its errors (the serving itself: test_sink_source)."""

from __future__ import annotations

import socket

import pytest
import typer
from typer.testing import CliRunner

from dashboard.cli import register
from groundwork.errors import UserError


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)

    @app.command("other")
    def other() -> None:  # a second command keeps `dashboard` a subcommand
        """Unused."""

    return app


def test_register_adds_the_dashboard_command() -> None:
    result = CliRunner().invoke(_app(), ["dashboard", "--help"])
    assert result.exit_code == 0
    assert "Serve the usage dashboard" in result.output


def test_a_wrong_source_is_a_user_error() -> None:
    result = CliRunner().invoke(_app(), ["dashboard", "--source", "cloud"])
    assert isinstance(result.exception, UserError)
    assert "--source must be auto, sink or store" in str(result.exception)


def test_a_busy_port_is_a_user_error_before_any_store_is_opened() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(_app(), ["dashboard", "--port", str(port)])
    assert isinstance(result.exception, UserError)
    with pytest.raises(UserError, match="set METER_DASHBOARD_PORT"):
        raise result.exception
