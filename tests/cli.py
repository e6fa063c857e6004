"""Invoke the CLI in-process through typer's CliRunner (every command is tested this way)."""

from __future__ import annotations

from typer.testing import CliRunner

from toolkit.cli.app import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _default_signals() -> None:
    """A child of a background job in a non-interactive shell inherits SIGINT ignored: give the CLI
    the default disposition back, so Ctrl-C tests hold however `make test` was started."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def spawn(*args: object, memory: int | None = None, wrap: list[str] = (), **kwargs):
    """`python -m toolkit ARGS` as a user would start it: a real process, real signals; `memory`: its address
    space in bytes (`ulimit -v`); `wrap`: a command it runs under (setpriv, to lose root's powers)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    def start() -> None:
        _default_signals()
        if memory is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), **kwargs.pop("env", {})}
    return subprocess.Popen([*wrap, sys.executable, "-m", "toolkit", *map(str, args)], cwd=kwargs.pop("cwd", root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=start, **kwargs)


def run_cli(*args: object, timeout: float = 600, **kwargs):
    """Run `python -m toolkit ARGS` to the end: (exit code, stdout, stderr)."""
    proc = spawn(*args, **kwargs)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
