"""Backends, looked up by name and imported only when used (vendor SDKs stay optional)."""

from __future__ import annotations

import importlib

from toolkit.backends.base import Backend
from toolkit.errors import InputError, Unavailable
from toolkit.target import Target

_REGISTRY = {
    "onnxruntime": "toolkit.backends.onnxruntime:OnnxRuntimeBackend",
    "ascend": "toolkit.backends.ascend.backend:AscendBackend",
    "tensorrt": "toolkit.backends.tensorrt.backend:TensorRTBackend",
    "sim": "toolkit.backends.sim:SimBackend",
    "openvino": "toolkit.backends.openvino:OpenVinoBackend",
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    try:
        module, cls = _REGISTRY[name].split(":")
    except KeyError:
        raise InputError(f"backend {name!r}: unknown (known: {', '.join(names())})") from None
    return getattr(importlib.import_module(module), cls)


def get(name: str) -> Backend:
    return backend_class(name)()


def require(target: Target) -> Backend:
    """The target's backend, or Unavailable ('unavailable: <reason>', exit 3) when the target cannot run here."""
    backend = get(target.backend)
    reason = backend.unavailable_for(target)
    if reason:
        raise Unavailable(f"target {target.name}: {reason}")
    return backend
