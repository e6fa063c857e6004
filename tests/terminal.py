"""A command's screen as a person sees it: run in a real terminal (a tmux pane of a given width, its own tmux
server), captured whole with wrapped lines joined, so that a line wider than the terminal shows as one line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

WIDTHS = (60, 80, 100, 120)
CUT = "…"  # what rich puts where it cuts a cell or a line


def toolkit(*args) -> list[str]:
    return [sys.executable, "-m", "toolkit", *map(str, args)]


def every_help() -> list[str]:
    """Every command's --help, one after the other, in one process (as `python -m toolkit C --help` prints it)."""
    code = ("from toolkit.cli.app import COMMANDS, app\n"
            "for name in [None, *COMMANDS]:\n"
            "    try:\n"
            "        app([name, '--help'] if name else ['--help'], prog_name='python -m toolkit')\n"
            "    except SystemExit:\n"
            "        pass\n")
    return [sys.executable, "-c", code]


def screen(argv: list[str], width: int, tmp_path: Path, timeout: float = 120) -> str:
    """`argv` in a tmux pane `width` columns wide (stdout and stderr both), once it has ended: its whole screen,
    history included, each wrapped line joined again (tmux's own line at the end left out)."""
    if shutil.which("tmux") is None:
        if os.environ.get("CENTERFACE_REQUIRE_TMUX"):
            pytest.fail("tmux is not installed, and CENTERFACE_REQUIRE_TMUX says the screen tests must run")
        pytest.skip("tmux is not installed (apt-get install tmux; .ci/run installs it)")
    socket = f"screens-{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g history-limit 50000\nset -g remain-on-exit on\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
    command = shlex.join(argv)
    tmux = ["tmux", "-L", socket, "-f", str(conf)]
    subprocess.run([*tmux, "new-session", "-d", "-x", str(width), "-y", "40", "-c", os.getcwd(), command],
                   check=True, env={**env, "TERM": "xterm-256color"})
    try:
        deadline = time.monotonic() + timeout
        while _tmux(tmux, "display-message", "-p", "#{pane_dead}").strip() != "1":
            assert time.monotonic() < deadline, f"{command} did not end within {timeout} s"
            time.sleep(0.2)
        shown = _tmux(tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-")
        return "\n".join(line for line in shown.splitlines() if not line.startswith("Pane is dead"))
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def _tmux(tmux: list[str], *args: str) -> str:
    return subprocess.run([*tmux, *args], capture_output=True, text=True, check=True).stdout


def check_screen(text: str, width: int, whole: list[str], what: str) -> None:
    """No line wider than the terminal (but a single word longer than it, on its own line), nothing cut, and
    each of `whole` (identifiers, figures) on one line."""
    lines = [line.rstrip() for line in text.rstrip("\n").splitlines()]
    for line in lines:
        assert len(line) <= width or len(line.split()) == 1, f"{what} at {width} columns: too wide: {line!r}"
        assert CUT not in line, f"{what} at {width} columns: cut: {line!r}"
    for item in whole:
        assert any(item in line for line in lines), f"{what} at {width} columns: {item!r} not whole on a line"


def words_of(text: str) -> list[str]:
    """The identifiers and figures in a text: its words, without the punctuation around them."""
    return [w.strip(".,;:()'\"") for w in text.split() if len(w.strip(".,;:()'\"")) > 2 and not re.match(r"^\W+$", w)]
