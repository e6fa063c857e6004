"""The TensorRT runner: one execution context and CUDA stream on one GPU, buffers allocated once for
the largest batch and input (pinned on the host), any batch size inside the profile; with buckets, the
optimisation profile of the batch's input size. The pipeline's batch buffers are pinned memory it
offers (`empty_batch`), copied to the GPU as they are. Several GPUs: one runner each, in a DevicePool."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.backends.base import Runner, RunnerInfo
from toolkit.backends.tensorrt import cuda, engine
from toolkit.backends.tensorrt.settings import TensorRTSettings
from toolkit.data.preprocess import NCHW_F32
from toolkit.errors import InputError, ToolkitError
from toolkit.model.signature import INPUT_NAME, OUTPUT_CHANNELS, OUTPUT_NAMES, OUTPUT_STRIDE


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path: Path, settings: TensorRTSettings, device_id: int | None = None) -> None:
        import tensorrt as trt

        self.device_id = settings.device_id if device_id is None else device_id
        engine.check(engine_path, engine.current(self.device_id))
        self.settings, self.source = settings, f"{engine_path} (GPU {self.device_id})"
        self.info = RunnerInfo(NCHW_F32, (settings.height, settings.width) if len(settings.sizes) == 1 else None,
                               (1, settings.max_batch))  # several sizes: per profile
        self.host, self.device, self.stream, self.offered = {}, {}, None, []
        try:  # whatever was allocated before a failure is released
            cuda.set_device(self.device_id)
            self._open(trt, engine_path)
        except BaseException:
            self.close()
            raise

    def _open(self, trt, engine_path: Path) -> None:
        s = self.settings
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise InputError(f"{engine_path}: TensorRT could not deserialise it")
        self.context = self.engine.create_execution_context()
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {INPUT_NAME, *OUTPUT_NAMES}:
            raise InputError(f"{engine_path}: tensors {sorted(names)}, expected {INPUT_NAME} and {', '.join(OUTPUT_NAMES)}")
        wrong = {name: str(self.engine.get_tensor_dtype(name)) for name in sorted(names)
                 if self.engine.get_tensor_dtype(name) != trt.DataType.FLOAT}
        if wrong:  # the buffers below are float32, as a typed ONNX with FP32 I/O gives
            raise InputError(f"{engine_path}: I/O tensors of another dtype than its float32 buffers: {wrong}",
                             "rebuild it from the toolkit's typed ONNX (FP32 input and outputs): run --stages convert")
        largest = {INPUT_NAME: s.shape(s.max_batch)}
        largest |= {name: (s.max_batch, OUTPUT_CHANNELS[name], s.height // OUTPUT_STRIDE, s.width // OUTPUT_STRIDE)
                    for name in OUTPUT_NAMES}
        for name, shape in largest.items():  # sized for the largest batch and input, allocated once
            count = int(np.prod(shape))
            self.host[name] = cuda.PinnedArray(count, np.float32)
            self.device[name] = cuda.DeviceBuffer(count * 4)
            self.context.set_tensor_address(name, self.device[name].pointer)
        self.stream = cuda.Stream()
        self.active_profile = None

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        self.settings.profile(*batch.shape[2:])  # one of the engine's input sizes

    def empty_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        pinned = cuda.PinnedArray(int(np.prod(shape)), np.float32)
        self.offered.append(pinned)
        return pinned.array.reshape(shape)

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        cuda.set_device(self.device_id)  # the calling thread's current GPU: this runner's
        n, _, height, width = batch.shape
        s = self.settings
        profile = s.profile(height, width)
        if profile != self.active_profile:  # a bucket of another size: its own optimisation profile
            self.context.set_optimization_profile_async(profile, int(self.stream.handle))
            self.active_profile = profile
        run = max(n, s.min_batch)  # below the profile's minimum: pad
        shape = s.shape(run, (width, height))
        self.context.set_input_shape(INPUT_NAME, shape)
        if run == n and cuda.is_pinned(batch):  # the pipeline's pinned buffer: no copy on the host
            self.stream.to_device(self.device[INPUT_NAME], batch, batch.nbytes)
        else:
            feed = self.host[INPUT_NAME].array[: int(np.prod(shape))].reshape(shape)
            feed[:n] = batch
            feed[n:] = 0
            self.stream.to_device(self.device[INPUT_NAME], self.host[INPUT_NAME], feed.nbytes)
        if not self.context.execute_async_v3(int(self.stream.handle)):
            raise ToolkitError("TensorRT execution failed")
        shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in OUTPUT_NAMES}
        for name, out_shape in shapes.items():
            self.stream.to_host(self.host[name], self.device[name], int(np.prod(out_shape)) * 4)
        self.stream.synchronize()
        return {name: self.host[name].array[: int(np.prod(out_shape))].reshape(out_shape)[:n].copy()
                for name, out_shape in shapes.items()}

    def _release(self) -> None:
        for buffer in (*self.host.values(), *self.device.values(), *self.offered):
            buffer.free()
        self.host, self.device, self.offered = {}, {}, []
        if self.stream is not None:
            self.stream.destroy()
            self.stream = None
