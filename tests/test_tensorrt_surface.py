"""The TensorRT backend against the vendor's real compiled bindings, without a GPU.

TensorRT: the bindings wheels of the newest 10.x and 11.x (PyPI `tensorrt-cu12-bindings`,
`tensorrt-cu13-bindings`, 1.3 MB each) hold the compiled module; pybind11 registers every class, method,
attribute and enum name as a C string in it. The linker merges a string into the tail of a longer one
(`INT8` into `UINT8`), so a name is "in" a module when some string ends with it: a name the 11.x module
lacks is truly gone. The backend's names are collected from its source (AST); the test fails on any name
the 10.x module has and the 11.x module lacks, and on any `trt.X.Y` chain either module lacks.
(`BuilderFlag.INT8` shows the limit: `INT8` stays as the tail of `UINT8`, so a removed enum member whose
name survives elsewhere is not seen; the backend touches no `BuilderFlag` at all, which is asserted.)

CUDA: cuda-bindings 12.x and 13.x import without a GPU: every `rt.` chain the backend calls is resolved
in each (`python -m` in a subprocess with the wheel on its path).

Wheels download once into the toolkit's cache ($CENTERFACE_CACHE/vendor-wheels). In CI a download that
fails fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from toolkit.paths import REPO_ROOT
from vendor import wheel

BACKEND = REPO_ROOT / "toolkit" / "backends" / "tensorrt"
TENSORRT = {10: "tensorrt-cu12-bindings==10.16.1.11", 11: "tensorrt-cu13-bindings==11.4.0.106"}
CUDA_BINDINGS = {12: "cuda-bindings==12.9.10", 13: "cuda-bindings==13.5.0"}
PATHFINDER = "cuda-pathfinder==1.9.1"  # what cuda-bindings imports
# The toolkit's own fields that share a name with a removed TensorRT one, and the receivers they are read on
# (`target.precision`, a Target's; `s.precision`, a TensorRTSettings'): any other use is still flagged.
OWN = {"precision": {"target", "s", "settings"}}
REMOVED_IN_11 = {"EXPLICIT_BATCH", "FP16", "OBEY_PRECISION_CONSTRAINTS", "int8_calibrator", "set_calibration_profile",
                 "IInt8EntropyCalibrator2", "precision", "set_output_type"}  # the list, as the 11.4 module says


def module_strings(requirement: str) -> set[str]:
    """Every NUL-terminated printable string of the wheel's compiled tensorrt module, and every tail of one."""
    with zipfile.ZipFile(wheel(requirement)) as whl:
        (so,) = [n for n in whl.namelist() if re.search(r"/tensorrt[^/]*\.so$", n)]
        data = whl.read(so)
    strings = {s.decode("ascii") for s in re.findall(rb"[\x20-\x7e]+(?=\x00)", data)}
    return {s[i:] for s in strings for i in range(len(s))}


def backend_names() -> tuple[set[str], set[tuple[str, ...]]]:
    """Every attribute, keyword-argument and getattr name in the backend's source (but the toolkit's own
    fields read on their own objects, OWN), and every `trt.` chain."""
    names, chains = set(), set()
    for path in BACKEND.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                if not (isinstance(node.value, ast.Name) and node.value.id in OWN.get(node.attr, ())):
                    names.add(node.attr)
                chain = attribute_chain(node)
                if chain and chain[0] == "trt":
                    chains.add(chain[1:])
            elif isinstance(node, ast.Call):
                names |= {k.arg for k in node.keywords if k.arg}
                if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") and len(node.args) > 1 \
                        and isinstance(node.args[1], ast.Constant):
                    names.add(node.args[1].value)
    return names, chains


def attribute_chain(node: ast.Attribute) -> tuple[str, ...] | None:
    """('trt', 'DataType', 'FLOAT') for trt.DataType.FLOAT; None when the root is not a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return (node.id, *reversed(parts)) if isinstance(node, ast.Name) else None


@pytest.fixture(scope="module")
def tensorrt_modules() -> dict[int, set[str]]:
    return {major: module_strings(req) for major, req in TENSORRT.items()}


def test_the_wheels_are_the_real_modules(tensorrt_modules: dict[int, set[str]]) -> None:
    ten, eleven = tensorrt_modules[10], tensorrt_modules[11]
    assert {"STRONGLY_TYPED", "build_serialized_network", "execute_async_v3", "get_tensor_dtype"} <= ten & eleven
    assert REMOVED_IN_11 <= ten and not REMOVED_IN_11 & eleven  # what NVIDIA's 10.x -> 11.x migration says


def test_the_backend_uses_no_name_tensorrt_11_removed(tensorrt_modules: dict[int, set[str]]) -> None:
    names, chains = backend_names()
    assert {"create_network", "set_tensor_address", "STRONGLY_TYPED"} <= names  # the source is really read
    gone = sorted(n for n in names if n in tensorrt_modules[10] and n not in tensorrt_modules[11])
    assert not gone, f"the TensorRT backend uses names TensorRT 11 removed: {', '.join(gone)}"
    missing = {major: sorted(".".join(c) for c in chains if not set(c) <= module) for major, module in tensorrt_modules.items()}
    assert missing == {10: [], 11: []}, missing
    assert not any(c[0] == "BuilderFlag" for c in chains)  # precision comes from the typed ONNX, never a flag


RESOLVE = """
import json, sys
from cuda.bindings import runtime as rt
roots = {"rt": rt, "props": rt.cudaDeviceProp()}
missing = []
for chain in json.loads(sys.argv[1]):
    obj = roots[chain[0]]
    for part in chain[1:]:
        if not hasattr(obj, part):
            missing.append(".".join(chain))
            break
        obj = getattr(obj, part)
print(json.dumps(missing))
"""


def cuda_chains() -> list[tuple[str, ...]]:
    """Every `rt.X...` chain of cuda.py (`runtime().X` counts as rt.X) and the device-property fields it reads."""
    tree = ast.parse((BACKEND / "cuda.py").read_text())
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, inner = [], node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "runtime":
                chains.add(("rt", *reversed(parts)))
            elif isinstance(inner, ast.Name) and inner.id in ("rt", "props"):
                chains.add((inner.id, *reversed(parts)))
    return sorted(chains)


@pytest.mark.parametrize("cuda", sorted(CUDA_BINDINGS))
def test_every_cuda_call_exists_in_cuda_bindings(cuda: int, tmp_path: Path) -> None:
    chains = cuda_chains()
    assert ("rt", "cudaMemcpyAsync") in chains and ("props", "major") in chains  # the source is really read
    for requirement in (CUDA_BINDINGS[cuda], PATHFINDER):
        with zipfile.ZipFile(wheel(requirement)) as whl:
            whl.extractall(tmp_path)
    proc = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(chains)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], f"cuda-bindings {CUDA_BINDINGS[cuda]} lacks these"
