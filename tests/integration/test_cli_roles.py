"""`snapfix users grant|revoke`: bootstrapping admins from the command line, through the same handlers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops.cli import app
from tests.helpers import PASSWORD


def test_an_operator_grants_and_revokes_a_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's roles change in the log; an unknown email or role is a clear error, exit code 1."""
    monkeypatch.setenv("SNAPFIX_EVENT_LOG", f"sqlite:///{tmp_path}/events.db")
    monkeypatch.setenv("SNAPFIX_VIEW_STORE", f"sqlite:///{tmp_path}/views.db")
    monkeypatch.setenv("SNAPFIX_ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("SNAPFIX_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("SNAPFIX_NEW_USER_PASSWORD", PASSWORD)
    runner = CliRunner()
    created = runner.invoke(app, ["users", "create", "--email", "kim@city.example", "--display-name", "Kim"])
    assert created.exit_code == 0, created.output
    granted = runner.invoke(app, ["users", "grant", "admin", "--email", "kim@city.example"])
    assert granted.exit_code == 0, granted.output
    assert "granted admin" in granted.output
    revoked = runner.invoke(app, ["users", "revoke", "admin", "--email", "kim@city.example"])
    assert revoked.exit_code == 0, revoked.output
    assert runner.invoke(app, ["users", "grant", "admin", "--email", "nobody@x.org"]).exit_code == 1
    assert runner.invoke(app, ["users", "grant", "mayor", "--email", "kim@city.example"]).exit_code == 1
