"""The command-line tools' way (ais_bench --input, the older benchmark tool): dataset images ->
batched input .bin files + info file; their output .bin files -> detections via the common decode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.backends.ascend import bins
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import NCHW_F32, NHWC_U8, Preprocess, Transform, into_batch
from toolkit.postprocess import Detections, decode

MANIFEST = "inputs.json"


@dataclass
class BinInput:
    stem: str  # file name without .bin: the tools name outputs <stem>_<i>.bin
    keys: list[str]  # the dataset images in it, in order (a last batch is zero-padded)
    transforms: list[Transform]


def info_path(folder: Path) -> Path:
    """The info file listing a folder of inputs: input_bs1/ -> input_bs1.info."""
    return folder.with_suffix(".info")


def write_inputs(items: list[tuple[str, Path]], pre: Preprocess, batch: int, aipp: bool, folder: Path) -> list[BinInput]:
    """One .bin per batch (uint8 NHWC for an AIPP model, else float32 NCHW), the info file, a manifest."""
    written = []
    for start in range(0, len(items), batch):
        chunk = items[start: start + batch]
        images, transforms = zip(*(pre.image_u8(read_rgb(p)) for _, p in chunk))
        pad = [np.zeros_like(images[0])] * (batch - len(chunk))
        data = into_batch(list(images) + pad, NHWC_U8 if aipp else NCHW_F32)
        stem = f"input_{start // batch:05d}"
        bins.write_input(folder / f"{stem}.bin", data)
        written.append(BinInput(stem, [k for k, _ in chunk], list(transforms)))
    bins.write_info(info_path(folder), [folder / f"{b.stem}.bin" for b in written], pre.width, pre.height)
    fileio.write_json(folder / MANIFEST, [{"stem": b.stem, "keys": b.keys} for b in written])
    return written


def write_images(items: list[tuple[str, Path]], pre: Preprocess, aipp: bool, folder: Path) -> list[BinInput]:
    """The older benchmark tool's inputs: one .bin per image and an info file listing each (the tool batches
    them itself; a file per batch would be read as one image)."""
    return write_inputs(items, pre, 1, aipp, folder)


def detections(outputs_dir: Path, inputs: list[BinInput], first_index: int, batch: int, height: int, width: int,
               threshold: float) -> dict[str, Detections]:
    """Every image's detections from the tool's output files (0-based for ais_bench, 1-based for benchmark)."""
    found = {}
    for entry in inputs:
        outputs = bins.read_outputs(outputs_dir, entry.stem, first_index, batch, height, width)
        for i, (key, transform) in enumerate(zip(entry.keys, entry.transforms)):
            one = {name: out[i] for name, out in outputs.items()}
            found[key] = decode(one["heatmap"], one["scale"], one["offset"], one["landmarks"], transform, threshold)
    return found
