"""INT8 calibration for TensorRT: the shared calibration set regrouped into the engine's calibration
batch (the deployed shape), and an entropy calibrator that reads and writes its cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from toolkit import fileio
from toolkit.calibration import CalibrationSet
from toolkit.errors import InputError


class Feeder:
    """Full batches of `batch` images at `shape` (C, H, W) from the set; a remainder is left out."""

    def __init__(self, calib: CalibrationSet, batch: int, shape: tuple[int, int, int]) -> None:
        self.calib, self.batch, self.shape = calib, batch, shape
        images = sum(s[0] for s in calib.manifest["shapes"])
        if images < batch:
            raise InputError(f"{calib.folder}: {images} calibration images, fewer than one batch of {batch}")
        bad = [s for s in calib.manifest["shapes"] if tuple(s[1:]) != shape]
        if bad:
            raise InputError(f"{calib.folder}: calibration batches are {bad[0][1:]}, the engine takes {list(shape)}")
        self.batches = images // batch
        self.left_out = images - self.batches * batch

    def __iter__(self) -> Iterator[np.ndarray]:
        pending = np.empty((0, *self.shape), np.float32)
        for chunk in self.calib.batches():
            pending = np.concatenate([pending, chunk.astype(np.float32)])
            while len(pending) >= self.batch:
                yield np.ascontiguousarray(pending[: self.batch])
                pending = pending[self.batch:]


def entropy_calibrator(feeder: Feeder, cache: Path):
    """A trt.IInt8EntropyCalibrator2 over `feeder`; it reuses `cache` when present (then reads no images)."""
    import tensorrt as trt

    from toolkit.backends.tensorrt import cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = iter(feeder)
            self.size = (feeder.shape[2], feeder.shape[1])  # (width, height): the profile it calibrates
            self.device = cuda.DeviceBuffer(feeder.batch * int(np.prod(feeder.shape)) * 4)

        def get_batch_size(self) -> int:
            return feeder.batch

        def get_batch(self, names):  # noqa: ARG002 (one input)
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.device.copy_from(batch)
            return [self.device.pointer]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            fileio.write_bytes(cache, bytes(data))

    return EntropyCalibrator()
