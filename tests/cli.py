"""Invoke the CLI in-process through typer's CliRunner (every command is tested this way)."""

from __future__ import annotations

from typer.testing import CliRunner

from toolkit.cli.app import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])
