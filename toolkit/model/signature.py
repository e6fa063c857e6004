"""The exported model's interface, without PyTorch: tensor names, opset, and the export shape."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.errors import InputError

OUTPUT_NAMES: tuple[str, ...] = ("heatmap", "scale", "offset", "landmarks")
INPUT_NAME = "image"
DEFAULT_OPSET = 17
OPSETS = (13, 20)  # what the toolkit exports: 13 and newer, up to the TorchScript exporter's newest (torch 2.13)


def check_opset(opset: int) -> int:
    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise InputError(f"--opset {opset}: the toolkit exports opsets {OPSETS[0]} to {OPSETS[1]} (PyTorch's TorchScript "
                         "exporter goes no further)")
    return opset
OUTPUT_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
OUTPUT_STRIDE = 4


def check_outputs(outputs: dict, batch_shape: tuple[int, ...], source: object) -> None:
    """A CenterFace model maps a (B, 3, H, W) input to (B, C, H/4, W/4) outputs: refuse anything else."""
    b, _, h, w = batch_shape
    for name, channels in OUTPUT_CHANNELS.items():
        want = (b, channels, h // OUTPUT_STRIDE, w // OUTPUT_STRIDE)
        got = tuple(outputs[name].shape)
        if got != want:
            raise InputError(f"{source}: output {name} has shape {got}, a CenterFace model gives {want} "
                             f"for an input of {tuple(batch_shape)}")


def check_onnx_file(path) -> None:
    """`path` is an ONNX model with CenterFace's interface (one input `image`, the four named outputs)."""
    import onnx

    from toolkit import reading

    reading.regular_file(path, "ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as exc:
        raise InputError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise InputError(f"{path}: inputs {inputs} and outputs {outputs}; an exported CenterFace model has "
                         f"input {INPUT_NAME!r} and outputs {', '.join(OUTPUT_NAMES)}")


@dataclass(frozen=True)
class ExportShape:
    """Static dims are ints; None means dynamic (batch 'B', height 'H', width 'W')."""

    batch: int | None = None
    height: int | None = None
    width: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> ExportShape:
        """'16x3x800x800' (static), '1x3x800x800', or None / 'dynamic' for all-dynamic."""
        if not text or text == "dynamic":
            return cls()
        try:
            b, c, h, w = (None if p in ("B", "?", "-1") else int(p) for p in text.lower().split("x"))
        except ValueError:
            raise InputError(f"shape {text!r}: expected BxCxHxW such as 16x3x800x800") from None
        if any(d is not None and d <= 0 for d in (b, c, h, w)):
            raise InputError(f"shape {text!r}: every dimension must be positive")
        if c != 3:
            raise InputError(f"shape {text!r}: CenterFace takes 3 channels, not {c}")
        for dim in (h, w):
            if dim is not None and (dim <= 0 or dim % 32):
                raise InputError(f"shape {text!r}: height and width must be positive multiples of 32")
        if b is not None and b <= 0:
            raise InputError(f"shape {text!r}: batch must be positive")
        return cls(b, h, w)

    def example(self) -> tuple[int, int, int, int]:
        return (self.batch or 1, 3, self.height or 256, self.width or 256)

    def describe(self) -> str:
        return "x".join(str(d) if d else n for d, n in zip((self.batch, 3, self.height, self.width), "BCHW"))

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {i: n for i, (d, n) in enumerate(zip((self.batch, 3, self.height, self.width), "B?HW")) if d is None}
        out_axes = {i: n.lower() if n in "HW" else n for i, n in axes.items()}
        return {INPUT_NAME: axes, **{name: out_axes for name in OUTPUT_NAMES}}
