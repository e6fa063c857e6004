"""The model: official weights, the PyTorch module, its port and ONNX export.

PyTorch is optional at run time (the target images carry none): `torch_parts` imports the modules
that need it, or says why it cannot.
"""

from __future__ import annotations

from types import ModuleType

from toolkit.errors import Unavailable


def torch_parts() -> tuple[ModuleType, ModuleType]:
    """(port, export): the PyTorch half of the chain, or Unavailable when torch is not installed."""
    try:
        from toolkit.model import export, port
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise Unavailable("PyTorch is not installed here: port and export need it",
                          "pip install -e '.[export]', or run only --stages convert,infer on a run "
                          "folder whose model was exported elsewhere") from None
    return port, export
