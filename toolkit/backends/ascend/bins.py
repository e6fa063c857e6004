"""The files the Ascend tools read and write: input .bin files (float32 NCHW, or uint8 HWC for an
AIPP model), the info file, AMCT's calibration batches, and the output .bin files of one input."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from toolkit import fileio, reading
from toolkit.errors import InputError
from toolkit.model.signature import OUTPUT_NAMES

OUTPUT_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
DOWN = 4  # the heads' stride


def write_input(path: Path, batch: np.ndarray) -> Path:
    """One model input: float32 NCHW (no AIPP) or uint8 NHWC (AIPP), raw C order as the tools read it."""
    if batch.dtype not in (np.float32, np.uint8) or batch.ndim != 4:
        raise InputError(f"{path}: an input batch is float32 NCHW or uint8 NHWC, not {batch.dtype} {batch.shape}")
    return fileio.write_with(path, lambda tmp: np.ascontiguousarray(batch).tofile(tmp))


def read_input(path: Path, batch: int, height: int, width: int, aipp: bool) -> np.ndarray:
    shape, dtype = ((batch, height, width, 3), np.uint8) if aipp else ((batch, 3, height, width), np.float32)
    data = np.fromfile(path, dtype=dtype)
    if data.size != int(np.prod(shape)):
        raise InputError(f"{path}: {data.size} {dtype.__name__} values, expected {'x'.join(map(str, shape))}")
    return data.reshape(shape)


def write_info(path: Path, inputs: Iterable[Path], width: int, height: int) -> Path:
    """The benchmark tool's info file: `index path width height`, one input per line."""
    lines = [f"{i} {p} {width} {height}" for i, p in enumerate(inputs)]
    return fileio.write_text(path, "\n".join(lines) + "\n")


def read_info(path: Path) -> list[tuple[int, Path, int, int]]:
    entries = []
    for number, line in enumerate(reading.read_text(path).splitlines(), 1):
        parts = line.split()
        if len(parts) != 4:
            raise InputError(f"{path}:{number}: expected `index path width height`, got {line!r}")
        entries.append((int(parts[0]), Path(parts[1]), int(parts[2]), int(parts[3])))
    return entries


def write_calibration(folder: Path, batches: Iterable[np.ndarray]) -> list[Path]:
    """AMCT's --data_dir: every float32 NCHW batch as img_<k>_bs<bs>.bin (the guide's calibration_bin.py names;
    it stopped at 10 batches, the toolkit writes the whole set and gives AMCT --batch_num for all of it)."""
    written = []
    for k, batch in enumerate(batches):
        written.append(write_input(folder / f"img_{k}_bs{batch.shape[0]}.bin", batch.astype(np.float32)))
    if not written:
        raise InputError(f"{folder}: no calibration batches to write")
    return written


def output_files(folder: Path, stem: str, first_index: int) -> list[Path]:
    """The output files of input `stem`: ais_bench numbers them from 0, the older benchmark from 1."""
    return [folder / f"{stem}_{first_index + i}.bin" for i in range(len(OUTPUT_NAMES))]


def read_outputs(folder: Path, stem: str, first_index: int, batch: int, height: int, width: int) -> dict[str, np.ndarray]:
    """One input's outputs as float32 arrays named like every other backend's."""
    outputs = {}
    for name, path in zip(OUTPUT_NAMES, output_files(folder, stem, first_index)):
        shape = (batch, OUTPUT_CHANNELS[name], height // DOWN, width // DOWN)
        if not path.is_file():
            raise InputError(f"{path}: output missing (expected {len(OUTPUT_NAMES)} per input, numbered from {first_index})")
        data = np.fromfile(path, dtype=np.float32)
        if data.size != int(np.prod(shape)):
            raise InputError(f"{path}: {data.size} float32 values, expected {name} {'x'.join(map(str, shape))}")
        outputs[name] = data.reshape(shape)
    return outputs
