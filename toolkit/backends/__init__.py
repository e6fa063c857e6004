"""Backends, looked up by name and imported only when used (vendor SDKs stay optional)."""

from __future__ import annotations

import importlib

from toolkit.backends.base import Backend
from toolkit.errors import InputError, Unavailable

_REGISTRY = {
    "onnxruntime": "toolkit.backends.onnxruntime:OnnxRuntimeBackend",
    "ascend": "toolkit.backends.ascend.backend:AscendBackend",
    "tensorrt": "toolkit.backends.tensorrt.backend:TensorRTBackend",
    "sim": "toolkit.backends.sim:SimBackend",
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


def require(name: str, target: str) -> Backend:
    """The backend, or Unavailable ('unavailable: <reason>', exit 3) when it cannot run here."""
    backend = get(name)
    reason = backend.unavailable()
    if reason:
        raise Unavailable(f"target {target}: {reason}")
    return backend
