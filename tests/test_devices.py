"""Many devices behind one runner, the host pipeline's batch layouts, and the simulated card (issue 14)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from cli import invoke
from toolkit import machine, pipeline, targets
from toolkit.backends import pool, sim
from toolkit.backends.ascend.cann import parse_chips
from toolkit.backends.onnxruntime import Layout, OnnxRuntimeRunner, cpu_layout, layout_runner
from toolkit.data.images import read_rgb
from toolkit.data.preprocess import NCHW_F32, NHWC_U8, Preprocess, into_batch
from toolkit.errors import InputError

LETTERBOX = Preprocess("letterbox", 800, 800)


@pytest.fixture(scope="module")
def model(net, tmp_path_factory) -> Path:
    from toolkit.model import export

    return export.export(net, tmp_path_factory.mktemp("devices") / "m.onnx")


def boxes(runner, items, batch_size=1) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    pipeline.run(items, runner, LETTERBOX, lambda key, det, _o: found.__setitem__(key, det.boxes),
                 batch_size=batch_size)
    return found


def test_batches_in_both_layouts_hold_exactly_the_preprocessed_images(wider_images) -> None:
    """The reused buffers get what the float path made: CHW float32 0..255, or the uint8 HWC AIPP takes."""
    images = [LETTERBOX.image_u8(read_rgb(path))[0] for path in wider_images[:3]]
    floats = [image.transpose(2, 0, 1).astype(np.float32) for image in images]  # the plain definition
    buffer = np.full((4, 3, 800, 800), -1, np.float32)
    batch = into_batch(images, NCHW_F32, buffer)
    assert np.shares_memory(batch, buffer) and batch.shape == (3, 3, 800, 800)
    np.testing.assert_array_equal(batch, np.stack(floats))
    np.testing.assert_array_equal(into_batch(images, NHWC_U8), np.stack(images))


def test_separate_sessions_give_the_same_detections_and_count_each_device(model: Path, wider_images) -> None:
    items = [(str(i), p) for i, p in enumerate(wider_images[:8])]
    with OnnxRuntimeRunner(model, threads=2) as one, layout_runner(model, Layout(2, 1, 1)) as two:
        assert two.info.streams == 2 and two.info.host_cores == 2
        ref = boxes(one, items)
        times = pipeline.run(items, two, LETTERBOX, lambda *a: None, batch_size=2)
        got = boxes(two, items, batch_size=2)
    assert got.keys() == ref.keys()
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], atol=1e-2)
    assert [d["device"] for d in times.devices] == ["cpu session 0", "cpu session 1"]
    assert sum(d["images"] for d in times.devices) == len(items)
    assert times.summary()["devices"][0]["images_per_s"] > 0


def test_cpu_layouts_follow_the_measured_rule() -> None:
    assert cpu_layout(2) == Layout(1, 2, 1)  # one session, two one-thread streams (best on 2 cores)
    assert cpu_layout(16) == Layout(8, 1, 2)  # separate two-thread sessions (1.96x one session of 4 x 4 streams)
    assert cpu_layout(16, "latency") == Layout(1, 1, 16)
    with pytest.raises(InputError, match="choose from throughput, latency"):
        cpu_layout(4, "fastest")
    assert targets.load("cpu-latency").extra["onnxruntime"]["layout"] == "latency"


def test_simulated_devices_wait_their_latency_and_return_real_outputs(model: Path, wider_images) -> None:
    images = [LETTERBOX.image_u8(read_rgb(p))[0] for p in wider_images[:2]]
    outputs = {(800, 800): sim.reference_outputs(model, images)}
    settings = sim.SimSettings.of(targets.load("sim-310"))
    assert settings.latency(1) == pytest.approx(1 / 91.86) and settings.latency(16) == pytest.approx(16 / 80.35)
    assert settings.rate(8) == pytest.approx(91.86 + (80.35 - 91.86) * 7 / 15)
    device = sim.SimDevice(outputs, settings.latency, NCHW_F32, "sim")
    import time

    start = time.perf_counter()
    got = device.infer(into_batch(images * 2, NCHW_F32))
    assert time.perf_counter() - start >= settings.latency(4)
    np.testing.assert_array_equal(got["heatmap"][2], outputs[(800, 800)]["heatmap"][0])
    assert (got["heatmap"] > 0.5).any()  # real faces, so post-processing does real work
    with pytest.raises(InputError, match="uint8 N x H x W x 3"):  # an AIPP device refuses float input
        sim.SimDevice(outputs, settings.latency, NHWC_U8, "sim").infer(into_batch(images, NCHW_F32))


def _instant_card(model: Path, wider_images, devices: int = 4):
    images = [LETTERBOX.image_u8(read_rgb(p))[0] for p in wider_images[:2]]
    return sim.instant({(800, 800): sim.reference_outputs(model, images)}, NCHW_F32, devices)


def test_batch_buffers_made_before_a_run_serve_every_batch_of_later_runs(model: Path, wider_images) -> None:
    """`bench` warms them before its clock starts: no buffer is made (its pages faulted in) while timed."""
    items = [(str(i), p) for i, p in enumerate(wider_images[:12])]
    with _instant_card(model, wider_images) as card:
        buffers = pipeline.BatchBuffers(card, 2)
        buffers.warm((800, 800))
        made = {id(b) for _, b in buffers.free}
        assert len(made) == card.info.streams + 2
        for _ in range(2):
            found: dict[str, np.ndarray] = {}
            pipeline.run(items, card, LETTERBOX, lambda key, det, _o: found.__setitem__(key, det.boxes),
                         batch_size=2, buffers=buffers)
            assert found.keys() == {key for key, _ in items}
        assert {id(b) for _, b in buffers.free} == made
        with pytest.raises(ValueError, match="another runner or batch size"):
            pipeline.run(items, card, LETTERBOX, lambda *a: None, batch_size=4, buffers=buffers)


def test_a_device_failing_mid_run_stops_every_stream_and_thread(model: Path, wider_images) -> None:
    class LostChip(sim.SimDevice):
        calls = 0

        def _infer(self, batch: np.ndarray):
            self.calls += 1
            if self.calls == 3:
                raise InputError("chip 1: lost")
            return super()._infer(batch)

    with _instant_card(model, wider_images, 1) as reference:
        outputs, latency = reference.runners[0].outputs, (lambda n: 0.01)
    chips = [sim.SimDevice(outputs, latency, NCHW_F32, "chip 0"), LostChip(outputs, latency, NCHW_F32, "chip 1")]
    items = [(str(i), p) for i, p in enumerate(wider_images[:8])] * 4
    before = threading.active_count()
    with pool.DevicePool(chips, ["chip 0", "chip 1"]) as card, pytest.raises(InputError, match="chip 1: lost"):
        pipeline.run(items, card, LETTERBOX, lambda *a: None, batch_size=2)
    assert threading.active_count() == before


def test_preprocessing_workers_take_the_free_cores_up_to_the_measured_cap(model: Path, wider_images,
                                                                        monkeypatch) -> None:
    with _instant_card(model, wider_images) as card, OnnxRuntimeRunner(model, threads=1, streams=2) as cpu:
        assert (card.info.host_cores, cpu.info.host_cores) == (0, 2)
        for cores, on_card, on_cpu in ((16, 6, 6), (5, 5, 3), (2, 2, 2)):  # 6: past it threads contend for the GIL
            monkeypatch.setattr(machine, "usable_cores", lambda: cores)
            assert (pipeline.default_workers(card), pipeline.default_workers(cpu)) == (on_card, on_cpu), cores
        monkeypatch.setattr(machine, "usable_cores", lambda: 5)
        seen: set[str] = set()
        items = [(str(i), p) for i, p in enumerate(wider_images[:8])] * 3
        times = pipeline.run(items, card, LETTERBOX, lambda *a: seen.update(
            t.name for t in threading.enumerate() if t.name.startswith("preprocess")), batch_size=2)
        assert times.workers == len(seen) == 5  # a run really starts that many preprocessing threads


def test_bench_sim_310_drives_every_chip_and_reports_capacity(cpu_run: Path, tmp_path: Path) -> None:
    out, json_path = tmp_path / "sim-310", tmp_path / "bench.json"
    result = invoke("bench", "--target", "sim-310", "--device-ids", "all", "--batch-sizes", "1,4", "--images", "24",
                    "--iters", "4", "--capacity", "--out", out, "--json", json_path)
    assert result.exit_code == 0, result.output
    assert "SIMULATED Ascend 310 chip x 4" in result.output
    bench = json.loads(json_path.read_text())
    assert bench["simulation"]["label"] == "SIMULATED" and bench["simulation"]["devices"] == 4
    for bs, rate in (("1", 4 * 91.86), ("4", 4 * float(np.interp(4, [1, 16], [91.86, 80.35])))):
        figures = bench["batch_sizes"][bs]
        assert figures["simulated_rate"] == pytest.approx(rate, abs=0.01)
        assert figures["capacity"]["throughput"] > 0 and figures["e2e"]["throughput"] > 0
        assert len(figures["devices"]) == 4 and sum(d["images"] for d in figures["devices"]) == 24
        assert figures["e2e"]["throughput"] <= rate * 1.05  # a simulated chip is never faster than published
    report = invoke("report", "--runs", tmp_path)
    assert report.exit_code == 0, report.output
    rows = json.loads((tmp_path / "report.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    simulated = [r for r in rows if r["target"] == "sim-310"]
    assert simulated and all(r["source"] == "simulated" and r["easy"] is None for r in simulated)
    assert rows.index(simulated[0]) > max(i for i, r in enumerate(rows) if r["source"] != "simulated")
    from toolkit.report.plots import bar_label

    assert bar_label(simulated[0]) == "sim-310 bs1 (SIMULATED)"  # the throughput plot's bar says so too


def test_npu_smi_lists_every_chip_of_a_card() -> None:
    """`npu-smi info` on an Atlas 300 (4 chips): the second row of each chip names its device id."""
    table = "\n".join([
        "+------------------------------------------------------------------------------------+",
        "| npu-smi 21.0.2                   Version: 21.0.2                                   |",
        "+-------------------+-----------------+------------------------------------------------+",
        "| NPU     Name      | Health          | Power(W)  Temp(C)           Hugepages-Usage(page) |",
        "| Chip    Device    | Bus-Id          | AICore(%) Memory-Usage(MB)                     |",
        "+===================+=================+================================================+",
        *[line for chip in range(4) for line in (
            "| 1       310       | OK              | 12.8      45                0    / 970          |",
            f"| {chip}       {chip}         | 0000:0{5 + chip}:00.0    | 0         2621 / 8192                          |",
            "+===================+=================+================================================+")],
    ])
    assert parse_chips(table) == [0, 1, 2, 3]
    assert parse_chips("npu-smi: command failed") == []


@pytest.mark.parametrize("sample, chips", [("npu-smi-info-310.txt", [0]), ("npu-smi-info-310p3.txt", [0, 1])])
def test_npu_smi_tables_of_real_hosts(sample: str, chips: list[int]) -> None:
    """Tables printed on real hosts (tests/data/ascend/README.md names them): a 310 SoC board whose Bus-Id
    is NA, two 310P3 cards of one chip each."""
    assert parse_chips((Path(__file__).parent / "data" / "ascend" / sample).read_text()) == chips


def test_device_ids_all_reaches_the_container_as_every_device_it_sees(tmp_path: Path) -> None:
    result = invoke("run", "--target", "t4", "--dry-run", "--device-ids", "all", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert "--device-ids all" in " ".join(plan["container"]) and "--gpus all" in " ".join(plan["container"])


def test_run_on_a_simulated_aipp_chip_feeds_uint8_and_claims_no_accuracy(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim-310p"
    result = invoke("run", "--target", "sim-310p", "--data", data_root, "--limit", "8", "--out", out)
    assert result.exit_code == 0, result.output
    assert "SIMULATED Ascend 310P3 chip x 1: host side only, no AP" in " ".join(result.output.split())
    saved = json.loads((out / "result.json").read_text())
    assert saved["simulation"]["label"] == "SIMULATED" and saved["ap"] is None
    assert saved["throughput"]["devices"][0]["images"] == 8
    assert len(list((out / "predictions").rglob("*.txt"))) == 8  # the pipeline ran every image


def test_device_ids_on_a_cpu_target_are_refused_in_one_line(tmp_path: Path) -> None:
    result = invoke("bench", "--target", "cpu", "--device-ids", "0,1", "--batch-sizes", "1", "--images", "2",
                    "--out", tmp_path / "cpu")
    assert result.exit_code == 2 and "--device-ids picks chips or GPUs" in result.output
    assert not (tmp_path / "cpu").exists()
