"""One RunnerInfo record on every runner: each wrapper (a device pool, one runner per input size, the AIPP
emulation) derives its record from its children's in one helper, over every inner layout."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.backends.ascend.backend import AippEmulation
from toolkit.backends.base import RunnerInfo
from toolkit.backends.pool import DevicePool
from toolkit.backends.sim import SimDevice
from toolkit.backends.sized import SizedRunner
from toolkit.data.preprocess import NCHW_F32, NHWC_U8
from toolkit.errors import InputError

LAYOUTS = (NCHW_F32, NHWC_U8)
def outputs(size: tuple[int, int]) -> dict[str, np.ndarray]:
    return {name: np.zeros((1, c, size[0] // 4, size[1] // 4), np.float32)
            for name, c in (("heatmap", 1), ("scale", 2), ("offset", 2), ("landmarks", 10))}


def device(layout: str, size: tuple[int, int] = (32, 32), name: str = "chip") -> SimDevice:
    return SimDevice({size: outputs(size)}, lambda n: 0.0, layout, name)


def batch(layout: str, n: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    shape = (n, *size, 3) if layout == NHWC_U8 else (n, 3, *size)
    return np.zeros(shape, np.uint8 if layout == NHWC_U8 else np.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_device_pool_adds_up_its_devices_streams_and_keeps_their_input(layout: str) -> None:
    chips = [device(layout, name=f"chip {i}") for i in range(3)]
    with DevicePool(chips, [c.name for c in chips]) as pool:
        assert pool.info == RunnerInfo(layout, (32, 32), (1, None), streams=3, host_cores=0)
        assert pool.info.dtype == (np.uint8 if layout == NHWC_U8 else np.float32)
        assert pool.infer(batch(layout, 2))["heatmap"].shape == (2, 1, 8, 8)
        with pytest.raises(InputError, match="does not fit the model.s: it takes 32x32"):
            pool.infer(batch(layout, 1, (64, 32)))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_runner_per_size_takes_each_of_its_sizes_and_the_most_streams_of_any(layout: str) -> None:
    sizes = {(32, 32): device(layout), (64, 32): DevicePool([device(layout, (64, 32))] * 2, ["a", "b"])}
    sized = SizedRunner(sizes, "buckets")
    assert sized.info == RunnerInfo(layout, None, (1, None), streams=2, host_cores=0)
    for size in sizes:
        assert sized.infer(batch(layout, 1, size))["heatmap"].shape == (1, 1, size[0] // 4, size[1] // 4)
    with pytest.raises(InputError, match="none of its sizes"):
        sized.infer(batch(layout, 1, (16, 16)))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_aipp_emulation_takes_uint8_nhwc_in_front_of_a_float_network_only(layout: str) -> None:
    inner = DevicePool([device(layout), device(layout)], ["a", "b"])
    if layout == NHWC_U8:  # AIPP's output is float NCHW: an inner runner that takes uint8 cannot follow it
        with pytest.raises(InputError, match="AIPP's output is float NCHW"):
            AippEmulation(inner, {})
        return
    aipp = AippEmulation(inner, {})
    assert aipp.info == RunnerInfo(NHWC_U8, None, (1, None), streams=2, host_cores=0)  # the size: inner's to check


def test_wrapped_runners_of_different_layouts_or_batch_ranges_meet_in_one_rule() -> None:
    with pytest.raises(InputError, match="runners of different layouts"):
        DevicePool([device(NCHW_F32), device(NHWC_U8)], ["a", "b"])
    narrow, wide = device(NCHW_F32), device(NCHW_F32, (64, 32))
    object.__setattr__(narrow, "info", RunnerInfo(NCHW_F32, (32, 32), (1, 4), streams=1, host_cores=2))
    object.__setattr__(wide, "info", RunnerInfo(NCHW_F32, (64, 32), (2, 8), streams=2, host_cores=4))
    assert RunnerInfo.of_children([narrow, wide], each_stream=False) == RunnerInfo(NCHW_F32, None, (2, 4), 2, 4)
    assert RunnerInfo.of_children([narrow, wide], each_stream=True) == RunnerInfo(NCHW_F32, None, (2, 4), 3, 6)
    with pytest.raises(ValueError, match="not a runner's record"):
        RunnerInfo(batch=(4, 2))
