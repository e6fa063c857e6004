"""The little of the CUDA runtime the runner needs, through cuda-python (imported lazily)."""

from __future__ import annotations

import ctypes

import numpy as np

from toolkit.errors import ToolkitError, Unavailable


def runtime():
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt
        except ImportError:
            raise Unavailable("cuda-python is not installed (pip install cuda-python)") from None
    return rt


def check(result):
    """cuda-python returns (error, *values): raise on an error, return the value(s)."""
    rt = runtime()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise ToolkitError(f"CUDA error {rt.cudaGetErrorName(err)[1].decode()}")
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    try:
        return int(check(runtime().cudaGetDeviceCount()))
    except ToolkitError:
        return 0  # no driver or no device


def set_device(index: int) -> None:
    """Make GPU `index` the calling thread's current device (CUDA's current device is per thread)."""
    check(runtime().cudaSetDevice(index))


def device(index: int = 0) -> dict:
    """Name and compute capability of a GPU."""
    props = check(runtime().cudaGetDeviceProperties(index))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


class DeviceBuffer:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.pointer = int(check(runtime().cudaMalloc(nbytes)))

    def free(self) -> None:
        if self.pointer:
            check(runtime().cudaFree(self.pointer))
            self.pointer = 0


_PINNED: dict[int, int] = {}  # pointer -> bytes of every live PinnedArray (portable: any GPU's copies use them)


class PinnedArray:
    """Page-locked host memory viewed as a numpy array (fast, truly asynchronous copies)."""

    def __init__(self, count: int, dtype: np.dtype) -> None:
        nbytes = count * np.dtype(dtype).itemsize
        self.pointer = int(check(runtime().cudaMallocHost(nbytes)))
        _PINNED[self.pointer] = nbytes
        self.array = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(self.pointer)).view(dtype)

    def free(self) -> None:
        if self.pointer:
            _PINNED.pop(self.pointer, None)
            check(runtime().cudaFreeHost(self.pointer))
            self.pointer = 0


def is_pinned(array: np.ndarray) -> bool:
    """Whether a C-contiguous `array` lies wholly in pinned memory (so it is copied to the GPU as it is)."""
    start = array.ctypes.data
    return array.flags.c_contiguous and any(p <= start and start + array.nbytes <= p + n for p, n in _PINNED.items())


class Stream:
    def __init__(self) -> None:
        self.handle = check(runtime().cudaStreamCreate())

    def to_device(self, device: DeviceBuffer, host: PinnedArray | np.ndarray, nbytes: int) -> None:
        """From a PinnedArray, or a numpy array in pinned memory (`is_pinned`)."""
        rt = runtime()
        source = host.pointer if isinstance(host, PinnedArray) else host.ctypes.data
        check(rt.cudaMemcpyAsync(device.pointer, source, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle))

    def to_host(self, host: PinnedArray, device: DeviceBuffer, nbytes: int) -> None:
        rt = runtime()
        check(rt.cudaMemcpyAsync(host.pointer, device.pointer, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle))

    def synchronize(self) -> None:
        check(runtime().cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        check(runtime().cudaStreamDestroy(self.handle))
