"""What holds the structure: an import graph without cycles (lazy imports counted), one backend contract
that every backend meets for every target, and target files checked on load."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from cli import run_cli
from toolkit import backends, targets
from toolkit.backends.base import Runner, RunnerInfo
from toolkit.errors import InputError
from toolkit.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "toolkit"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every toolkit module `path` imports, anywhere: at the top, inside functions, under any `if`."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "toolkit.quantization" in graph["toolkit.chain"]  # the graph is really read
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_lazy_import_cycle(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from toolkit import b\n")
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert imports_of(a, {"toolkit.b"}) == {"toolkit.b"}
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toolkit import b\n")
    assert imports_of(a, {"toolkit.b"}) == {"toolkit.b"}  # no exemption: a type-only import is an edge too


def test_the_target_record_is_a_leaf_and_the_loader_imports_backends_at_the_top() -> None:
    graph = import_graph()
    assert graph["toolkit.target"] <= {"toolkit.data.preprocess", "toolkit.data.tta", "toolkit.errors"}
    tree = ast.parse((PACKAGE / "targets.py").read_text())
    top = {ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
    assert "from toolkit import backends, reading, schema" in top
    lazy = [ast.unparse(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
            if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert lazy == []


def test_the_backend_contract_depends_on_nothing_above_it() -> None:
    graph = import_graph()
    above = {"toolkit.chain", "toolkit.quantization", "toolkit.pipeline", "toolkit.bench", "toolkit.targets",
             "toolkit.cli", "toolkit.flows", "toolkit.report"}
    for module in ("toolkit.backends.base", "toolkit.backends.onnxruntime", "toolkit.backends.ascend.backend",
                   "toolkit.backends.tensorrt.backend"):
        reached, todo = set(), [module]
        while todo:
            for nxt in graph[todo.pop()] - reached:
                reached.add(nxt)
                todo.append(nxt)
        assert not {m for m in reached if any(m == a or m.startswith(a + ".") for a in above)}, module


def test_cli_modules_only_parse_call_and_print() -> None:
    """No cli/ module writes files, runs the pipeline or the chain, or stages run folders itself (the error
    path in cli/common reads what a rolled-back run folder kept, to say so)."""
    doing = {"toolkit.fileio", "toolkit.pipeline", "toolkit.runfolder", "toolkit.containers.run",
             "toolkit.chain.run_chain", "toolkit.chain.export_model", "toolkit.quantization.sweep",
             "toolkit.backends.get", "toolkit.backends.require"}
    for path in (PACKAGE / "cli").glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        allowed = {"toolkit.runfolder"} if path.name in ("common.py", "app.py") else set()
        assert not (names & doing) - allowed, f"{path.name}: {sorted((names & doing) - allowed)}"


TARGETS = targets.available()


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_meets_the_contract(name: str, tmp_path: Path) -> None:
    target = targets.load(name)
    backend = backends.get(target.backend)
    reason = backend.unavailable()  # never raises
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)
    steps = backend.dry_run(target, tmp_path)
    assert steps and all(s.title for s in steps)
    assert all(c.name and isinstance(c.ok, bool) for c in backend.checks())
    if target.precision == "int8":  # an INT8 target names a recipe and has a quantiser, by capability
        assert backend.int8 and target.extra["calibration"]["recipe"]
        assert bool(backend.sweep_methods) != bool(backend.own_quantiser)
    assert set(target.extra.get(target.backend, {})) <= set(backend.section_schema)


@pytest.mark.parametrize("name", [n for n in TARGETS if targets.load(n).precision == "int8"])
def test_calibrate_is_refused_before_any_work_where_it_cannot_run(name: str, data_root: Path, tmp_path: Path) -> None:
    backend = backends.get(targets.load(name).backend)
    reason = backend.unavailable_for_int8()
    if reason is None:
        pytest.skip(f"{name} can calibrate here")
    code, _, err = run_cli("calibrate", "--target", name, "--data", data_root, "--out", tmp_path / "run")
    assert code == 3, err
    assert err.strip() == f"unavailable: target {name}: {reason}"
    assert not (tmp_path / "run").exists()  # refused before the export


def test_methods_are_for_the_sweep_only(tmp_path: Path, data_root: Path) -> None:
    code, _, err = run_cli("calibrate", "--target", "cpu-int8", "--methods", "amct", "--out", tmp_path / "r")
    assert code == 2 and "calibration method 'amct': onnxruntime offers minmax, entropy, percentile" in err


class Doubling(Runner):
    name = "doubling"
    info = RunnerInfo(input_size=(64, 64), batch=(1, 2))

    def __init__(self) -> None:
        self.released = 0

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n, _, h, w = batch.shape
        return {name: np.zeros((n, c, h // 4, w // 4), np.float32)
                for name, c in (("heatmap", 1), ("scale", 2), ("offset", 2), ("landmarks", 10))}

    def _release(self) -> None:
        self.released += 1


def test_every_runner_checks_its_input_and_closes_once() -> None:
    runner = Doubling()
    assert runner.infer(np.zeros((2, 3, 64, 64), np.float32))["landmarks"].shape == (2, 10, 16, 16)
    for bad, says in ((np.zeros((2, 3, 64, 64), np.float64), "float32"), (np.zeros((3, 3, 64, 64), np.float32), "at most 2"),
                      (np.zeros((1, 3, 32, 64), np.float32), "does not fit the model.s: it takes 64x64"), (np.zeros((1, 4, 64, 64), np.float32), "N x 3")):
        with pytest.raises(InputError, match=says):
            runner.infer(bad)
    runner.close()
    runner.close()
    assert runner.released == 1


def test_every_runner_goes_through_the_checks() -> None:
    """Every Runner in the package implements `_infer` / `_release`; `infer` and `close` stay the contract's."""
    runners = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "Runner" for b in node.bases):
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                runners.append(node.name)
                assert "_infer" in methods and not methods & {"infer", "close"}, f"{path.name}: {node.name}"
                own = {ast.unparse(t) for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign))
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target])}
                kept_apart = own & {f"self.{k}" for k in ("layout", "streams", "host_cores", "input_size", "max_batch")}
                assert not kept_apart, f"{node.name} keeps {kept_apart} beside its RunnerInfo"
    assert {"OnnxRuntimeRunner", "TensorRTRunner", "AisBenchRunner", "DefaceStyleRunner"} <= set(runners)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, says", [
    ('backend = "onnxruntime"\nruns_in = "contianer"\n', "runs_in 'contianer' is not one of host, container"),
    ('backend = "onnxruntime"\nprecison = "fp16"\n', "unknown key 'precison'"),
    ('backend = "onnxruntime"\nprecision = "fp8"\n', "precision 'fp8' is not one of fp32, fp16, bf16, int8"),
    ('backend = "tpu"\n', "backend 'tpu' is not one of ascend, onnxruntime, openvino, sim, tensorrt"),
    ('backend = "tensorrt"\n[tensorrt]\nmax_batchsize = 8\n', "unknown key 'max_batchsize' in [tensorrt]"),
    ('backend = "onnxruntime"\n[ascend]\nsoc_version = "Ascend310"\n', "unknown key 'ascend'"),
    ('backend = "onnxruntime"\n[input]\nsizes = [800, 800]\n', "unknown key 'sizes' in [input]"),
    ('extends = "nope"\nbackend = "onnxruntime"\n', "extends 'nope'"),
    ('backend = "onnxruntime"\nthreshold = "high"\n', "threshold must be a number from 0 to 1, not 'high'"),
    ('backend = "onnxruntime"\n[input]\nsize = "800x800"\n', "[input] size must be [width, height], whole numbers above 0, not '800x800'"),
    ('backend = "onnxruntime"\n[input]\nbatch_sizes = "4"\n', "[input] batch_sizes must be a list of whole numbers 1 or more, each once, not '4'"),
    ('backend = "onnxruntime"\n[input]\nbatch_sizes = [4, 4]\n', "batch_sizes must be a list of whole numbers 1 or more, each once, not [4, 4]"),
    ('backend = "onnxruntime"\nname = ""\n', "name must be a plain name (letters, digits, '.', '_', '-'), not a path, not ''"),
    ('backend = "onnxruntime"\nname = "../../escape"\n', "name must be a plain name"),
    ('backend = "tensorrt"\n[tensorrt]\nmin_batch = "2"\n', "[tensorrt] min_batch must be a whole number 1 or more, not '2'"),
    ('backend = "ascend"\n[ascend]\naipp = "yes"\n', "[ascend] aipp must be true or false, not 'yes'"),
    ('backend = "onnxruntime"\nthreshold = nan\n', "threshold must be a number from 0 to 1, not nan"),
])
def test_a_target_file_is_checked_on_load(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path, "bad", text)
    with pytest.raises(InputError, match=f"{re.escape(str(path))}: .*{re.escape(says)}"):
        targets.load(str(path))
    code, _, err = run_cli("run", "--target", path, "--dry-run", "--out", tmp_path / "run")
    assert code == 2 and err.strip().startswith(f"error: {path}: ") and says in err


def test_a_target_extends_its_base(tmp_path: Path) -> None:
    base = targets.load("t4")
    child = targets.load("t4-int8")
    assert child.name == "t4-int8" and child.precision == "int8" and child.runs_in == base.runs_in
    assert child.extra["tensorrt"] == base.extra["tensorrt"] and child.extra["calibration"]["recipe"] == "tensorrt"
    assert (targets.load("310p").extra["ascend"], targets.load("310p").precision) == (targets.load("310p-fp16").extra["ascend"], "int8")
    loop = write(tmp_path, "a", f'extends = "{tmp_path / "b.toml"}"\nbackend = "onnxruntime"\n')
    write(tmp_path, "b", f'extends = "{loop}"\nbackend = "onnxruntime"\n')
    with pytest.raises(InputError, match="extends itself"):
        targets.load(str(loop))


def test_the_readme_opens_with_the_two_commands_and_reads_in_order() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make target=cpu", "make test"]
    sections = re.findall(r"^## (.+)$", text, re.M)
    order = ["Quick start", "The targets", "Which CPU target", "Reading the report", "The flow and the folders",
             "Adding a target", "Adding a backend"]
    assert sections[: len(order)] == order
    assert (REPO_ROOT / "docs" / "results.md").is_file() and "docs/results.md" in text
    listed = re.findall(r"^\| `([a-z0-9-]+)`", text.split("## The targets", 1)[1].split("##", 1)[0], re.M)
    named = {n.strip("` ") for row in re.findall(r"^\| (`[^|]+)\|", text, re.M) for n in row.split(",")}
    assert listed and set(targets.available()) <= named  # every target file in the table


def test_the_license_is_an_spdx_string() -> None:
    from toolkit import toml

    project = toml.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"


def test_no_function_of_the_pipeline_or_the_chain_is_over_60_lines() -> None:
    for name in ("pipeline.py", "chain.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{name}: {node.name} is {length} lines"
