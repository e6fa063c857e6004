"""`detect` with a target's deployment, on images, videos, image sequences and streams, with anonymisation
(issue 31). Real weights, real WIDER images, real videos made from them with PyAV, a real HTTP stream."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from cli import run_cli
from toolkit.data.wider import list_val_images, load_ground_truth
from toolkit.evaluate.wider_ap import read_predictions

av = pytest.importorskip("av")


def detected(folder: Path) -> dict:
    return json.loads((folder / "detections.json").read_text())


def same_boxes(run: Path, found: dict) -> None:
    """The faces detect found equal the prediction files run wrote: box for box (2 decimals), score for score."""
    predictions = read_predictions(run / "predictions")
    assert found["images"]
    for path, faces in found["images"].items():
        written = predictions[f"{Path(path).parent.name}/{Path(path).stem}"]
        mine = np.array([[f["x1"], f["y1"], f["x2"] - f["x1"], f["y2"] - f["y1"], f["score"]] for f in faces]).reshape(-1, 5)
        assert mine.shape == written.shape, path
        np.testing.assert_array_equal(mine[:, [0, 1, 4]], written[:, [0, 1, 4]])
        np.testing.assert_allclose(mine[:, 2:4], written[:, 2:4], atol=0.0100001)  # w, h: the difference of rounded sides


def run_images(data_root: Path, run: Path) -> list[Path]:
    """The images a run's prediction files name."""
    keys = {f"{p.parent.name}/{p.stem}" for p in (run / "predictions").glob("*/*.txt")}
    return [p for k, p in list_val_images(data_root) if k in keys]


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> Path:
    """openvino-int8 calibrated on 2 images, so its run takes seconds."""
    pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.toml").write_text('images = "wider_val_calibration.txt"\ncount = 2\npreprocess = "native"\n')
    text = (Path(__file__).parents[1] / "targets" / "openvino-int8.toml").read_text()
    (folder / "openvino-int8-tiny.toml").write_text(
        text.replace('extends = "openvino"', f'extends = "{Path(__file__).parents[1] / "targets" / "openvino.toml"}"')
        .replace('recipe = "cpu"', f'recipe = "{folder / "tiny.toml"}"'))
    return folder / "openvino-int8-tiny.toml"


@pytest.mark.parametrize("case", ["cpu", "openvino-int8", "t4 --mode emulate"])
def test_detect_with_a_target_gives_exactly_the_boxes_its_run_wrote(case: str, cpu_run: Path, data_root: Path,
                                                                    tmp_path: Path, request) -> None:
    if case == "cpu":
        run, target, mode = cpu_run, "cpu", []
    else:
        target, mode = ("t4", ["--mode", "emulate"]) if case.startswith("t4") else (str(request.getfixturevalue("tiny_int8")), [])
        run = tmp_path / "run"
        code, _, err = run_cli("run", "--target", target, *mode, "--data", data_root, "--limit", 4, "--out", run)
        assert code == 0, err
    images = run_images(data_root, run)[:4]
    code, out, err = run_cli("detect", *images, "--target", target, *mode, "--from", run, "--min-score", 0.05,
                             "--no-pictures", "--out", tmp_path / "det", env={"COLUMNS": "300"})
    assert code == 0, err
    found = detected(tmp_path / "det")
    same_boxes(run, found)
    assert found["made_with"]["emulated"] == bool(mode) and ("EMULATED" in out) == bool(mode)


def test_detect_converts_first_where_the_run_folder_has_none(wider_images: list[Path], tmp_path: Path) -> None:
    code, _, err = run_cli("detect", wider_images[0], "--target", "cpu", "--from", tmp_path / "fresh", "--out",
                           tmp_path / "det")
    assert code == 0 and "no converted model of cpu yet: converting it first" in err, err
    assert (tmp_path / "fresh" / "stages.json").is_file() and detected(tmp_path / "det")["made_with"]["target"] == "cpu"


def make_video(path: Path, pictures: list[np.ndarray], fps: int = 30, audio_s: float = 0.0,
               options: dict | None = None) -> Path:
    """An H.264 video of `pictures` (720p), with a tone of `audio_s` seconds as AAC when asked."""
    with av.open(str(path), "w", options=options or {}) as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=44100) if audio_s else None
        for picture in pictures:
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for start in range(0, int(audio_s * 44100), 1024) if sound else ():
            tone = (0.1 * np.sin(2 * np.pi * 440 * (np.arange(1024) + start) / 44100)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode() if stream else ():
                out.mux(packet)
    return path


def panned(rgb: np.ndarray, frames: int, boxes: np.ndarray, noise: float = 0.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A 1280 x 720 window panned across `rgb` enlarged 1.6x (camera noise of `noise` grey levels, seeded), and
    where the `boxes` (x y w h) fall in each frame."""
    import cv2

    scale = 1.6
    big = cv2.resize(rgb, (int(rgb.shape[1] * scale), int(rgb.shape[0] * scale)))
    pictures, where = [], []
    for i in range(frames):
        t = i / max(1, frames - 1)
        x0, y0 = int(t * (big.shape[1] - 1280)), int((0.5 + 0.5 * np.sin(2 * np.pi * t)) * (big.shape[0] - 720))
        crop = big[y0:y0 + 720, x0:x0 + 1280].astype(np.float32)
        crop += np.random.default_rng(i).normal(0, noise, crop.shape) if noise else 0
        pictures.append(np.clip(crop, 0, 255).astype(np.uint8))
        where.append(boxes * scale - [x0, y0, 0, 0])
    return pictures, where


@pytest.fixture(scope="module")
def clip(data_root: Path, tmp_path_factory) -> Path:
    """2 seconds of 720p at 15 fps panned across real WIDER images, with 2 seconds of sound."""
    from toolkit.data.images import read_rgb

    pictures = []
    for _, path in list_val_images(data_root)[:2]:
        pictures += panned(read_rgb(path), 15, np.zeros((0, 4)))[0]
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", pictures, fps=15, audio_s=2.0)


def test_a_video_is_anonymised_in_its_container_with_its_frames_and_audio(clip: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("detect", clip, "--anonymize", "blur", "--out", tmp_path / "det", env={"COLUMNS": "300"})
    assert code == 0, err
    summary = detected(tmp_path / "det")["videos"][str(clip)]
    assert summary["frames"] == 30 and summary["audio"] and summary["corrupt_frames_skipped"] == 0
    with av.open(str(tmp_path / "det" / "clip.anonymized.mp4")) as made, av.open(str(clip)) as source:
        assert [s.type for s in made.streams] == ["video", "audio"] and made.streams.video[0].frames == 30
        assert made.streams.video[0].average_rate == source.streams.video[0].average_rate
        assert abs(made.duration - source.duration) < 0.1 * source.duration
    records = [json.loads(line) for line in (tmp_path / "det" / "clip.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(30)) and records[1]["time"] == pytest.approx(1 / 15, abs=1e-3)
    face = next(f for r in records for f in r["faces"])
    assert set(face) >= {"x1", "y1", "x2", "y2", "score", "landmarks"} and len(face["landmarks"]) == 5


def test_a_time_span_keeps_its_own_audio(clip: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("detect", clip, "--start", 1, "--end", 1.5, "--anonymize", "solid", "--out", tmp_path / "d")
    assert code == 0, err
    with av.open(str(tmp_path / "d" / "clip.anonymized.mp4")) as made:
        assert made.streams.video[0].frames == 8 and made.streams.audio
        assert made.duration / 1e6 == pytest.approx(0.55, abs=0.1)
    assert json.loads((tmp_path / "d" / "clip.jsonl").read_text().splitlines()[0])["frame"] == 15


def test_smoothing_leaves_fewer_face_pixels_uncovered(data_root: Path, tmp_path: Path, catalogue: list) -> None:
    """A noisy pan across a real WIDER crowd with its ground-truth faces: the fraction of face pixels no mask
    covers, with and without gap filling (the figures go to the catalogue)."""
    from toolkit.data.images import read_rgb
    from toolkit.media.anonymize import Anonymizer

    key = "10--People_Marching/10_People_Marching_People_Marching_2_401"
    boxes = load_ground_truth(data_root).images[key].boxes
    pictures, truth = panned(read_rgb(dict(list_val_images(data_root))[key]), 40, boxes, noise=8)
    video = make_video(tmp_path / "crowd.mp4", pictures)
    uncovered = {}
    for smooth in (0, 2):
        code, _, err = run_cli("detect", video, "--anonymize", "blur", "--min-score", 0.3, "--smooth", smooth,
                               "--out", tmp_path / f"s{smooth}")
        assert code == 0, err
        records = [json.loads(line) for line in (tmp_path / f"s{smooth}" / "crowd.jsonl").read_text().splitlines()]
        uncovered[smooth] = uncovered_fraction(truth, records, Anonymizer("blur"))
    catalogue.append(("smoothing: face pixels left uncovered", "detect crowd.mp4 --anonymize blur --smooth 0 / 2", 0,
                      f"{uncovered[0]:.4f} without, {uncovered[2]:.4f} with"))
    assert uncovered[2] < uncovered[0]


def uncovered_fraction(truth: list[np.ndarray], records: list[dict], anonymizer) -> float:
    """Of the ground-truth face pixels in every frame, the share that no mask covers."""
    faces = hidden = 0
    for boxes, record in zip(truth, records, strict=True):
        found = np.array([[f["x1"], f["y1"], f["x2"], f["y2"]] for f in record["faces"]]).reshape(-1, 4)
        mask = anonymizer.mask(found, 1280, 720)
        for x, y, w, h in boxes:
            x1, y1, x2, y2 = int(max(0, x)), int(max(0, y)), int(min(1280, x + w)), int(min(720, y + h))
            if x2 > x1 and y2 > y1:
                faces += (x2 - x1) * (y2 - y1)
                hidden += int(mask[y1:y2, x1:x2].sum())
    return 1 - hidden / faces


def test_corrupt_frames_are_skipped_and_counted(clip: Path, tmp_path: Path) -> None:
    data = bytearray(clip.read_bytes())
    noise = np.random.default_rng(0)
    for at in range(len(data) // 3, len(data) // 3 + 40000, 211):  # damage in the middle of the picture data
        data[at:at + 50] = noise.bytes(50)
    (tmp_path / "broken.mp4").write_bytes(bytes(data))
    code, _, err = run_cli("detect", tmp_path / "broken.mp4", "--out", tmp_path / "det")
    assert code == 0, err
    summary = detected(tmp_path / "det")["videos"][str(tmp_path / "broken.mp4")]
    assert summary["corrupt_frames_skipped"] > 0 and 0 < summary["frames"] < 30
    with av.open(str(tmp_path / "det" / "broken.annotated.mp4")) as made:
        assert made.streams.video[0].frames == summary["frames"]


class _Cut(http.server.BaseHTTPRequestHandler):
    """Serves one file, and drops the connection after `share` of it."""

    data, share = b"", 1.0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        try:
            self.wfile.write(self.data[: int(len(self.data) * self.share)])
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_a_stream_that_drops_is_reported_and_what_was_written_is_whole(clip: Path, tmp_path: Path) -> None:
    with av.open(str(clip)) as source, av.open(str(tmp_path / "clip.ts"), "w") as ts:  # a stream's container
        out = ts.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                ts.mux(packet)
    handler = type("Handler", (_Cut,), {"data": (tmp_path / "clip.ts").read_bytes(), "share": 0.5})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.ts"
    try:
        code, _, err = run_cli("detect", url, "--anonymize", "solid", "--out", tmp_path / "det", timeout=120)
    finally:
        server.shutdown()
    assert code == 0, err
    summary = detected(tmp_path / "det")["videos"][url]
    assert summary["ended"].startswith("dropped: ") and 0 < summary["frames"] < 30
    with av.open(str(tmp_path / "det" / "stream.anonymized.mp4")) as made:  # closed properly: every frame readable
        assert sum(1 for _ in made.decode(video=0)) == summary["frames"]
    assert len((tmp_path / "det" / "stream.jsonl").read_text().splitlines()) == summary["frames"]


def test_bench_video_times_every_stage(clip: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("bench", "--video", clip, "--out", tmp_path / "run", "--json", tmp_path / "v.json",
                             env={"COLUMNS": "200"})
    assert code == 0, err
    result = json.loads((tmp_path / "v.json").read_text())
    assert result["frames"] == 30 and result["frames_per_s"] > 0 and result["input"]["mode"] == "native"
    assert set(result["stages_ms"]) == {"decode", "preprocess", "infer", "postprocess", "hide / draw", "encode"}
    assert all(v is not None and v >= 0 for v in result["stages_ms"].values())
    assert (tmp_path / "run" / "video_bench.json").is_file() and "end to end, frames/s" in out
