"""Shared fixtures: the real official weights, real WIDER FACE images, a small run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.paths import default_dataset

DATA = default_dataset()
needs_data = pytest.mark.skipif(DATA is None, reason="WIDER FACE subset not found (../shared/data/widerface-val-mini)")


@pytest.fixture(scope="session", autouse=True)
def runs_folder(tmp_path_factory) -> Path:
    """The runs folder of every command a test starts without --out (detect's default target converts into it):
    never the checkout's runs/."""
    import os

    folder = tmp_path_factory.mktemp("runs-default")
    os.environ["CENTERFACE_RUNS"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def data_root() -> Path:
    if DATA is None:
        pytest.skip("WIDER FACE subset not found (../shared/data/widerface-val-mini)")
    return DATA


@pytest.fixture(scope="session")
def wider_images(data_root: Path) -> list[Path]:
    from toolkit.data.wider import list_val_images

    items = list_val_images(data_root)
    return [p for _, p in items[::60]]  # a spread of events


@pytest.fixture(scope="session")
def official_onnx() -> Path:
    from toolkit.model import weights

    return weights.fetch()


@pytest.fixture(scope="session")
def pth(official_onnx: Path, tmp_path_factory) -> Path:
    from toolkit.model import port

    return port.port(official_onnx, tmp_path_factory.mktemp("model") / "centerface.pth")


@pytest.fixture(scope="session")
def net(pth: Path):
    from toolkit.model import port

    return port.load_module(pth)


@pytest.fixture(scope="session")
def cpu_run(data_root: Path, tmp_path_factory) -> Path:
    """The CPU chain over a 12-image slice, once per session, through the CLI."""
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    out = tmp_path_factory.mktemp("runs") / "cpu"
    result = CliRunner().invoke(app, ["run", "--target", "cpu", "--data", str(data_root), "--limit", "12",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory):
    """Rows (case, command, exit, the line printed) from the bad-input and signal tests, written as a
    Markdown table when the session ends: to $CENTERFACE_CATALOGUE if set, else into pytest's temp folder."""
    import os

    rows: list[tuple[str, str, int, str]] = []
    yield rows
    if rows:
        lines = ["| case | command | exit | the line printed |", "|---|---|---|---|"]
        cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
        lines += [f"| {cell(case)} | `{cell(command)}` | {code} | `{cell(line)}` |" for case, command, code, line in sorted(rows)]
        path = Path(os.environ.get("CENTERFACE_CATALOGUE") or tmp_path_factory.getbasetemp() / "catalogue.md")
        path.write_text("\n".join(lines) + "\n")
