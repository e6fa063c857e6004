"""One video through the pipeline: its frames decoded ahead (the pipeline's assembler thread reads the source),
inferred in batches on the runner's streams, and written in order by a writer thread of its own (smoothing,
hiding or drawing faces, encoding, one JSON Lines record a frame), so decoding and encoding overlap inference.
A frame the device failed on is written hidden whole (never as it was: its faces are unknown) and recorded."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit import pipeline
from toolkit.backends.base import Runner
from toolkit.data.preprocess import Preprocess
from toolkit.draw import draw_rgb
from toolkit.media.anonymize import Anonymizer, kept
from toolkit.media.sinks import VideoWriter, frame_record, with_audio
from toolkit.media.smoothing import GapFiller
from toolkit.media.sources import FirstInterruptEnds, Video
from toolkit.postprocess import Detections

PENDING = 64  # frames found and not yet written, at most: past this the writer holds the pipeline back


@dataclass
class Faces:
    """What a video's frames get: the faces kept, how they are hidden, how many frames a gap may be filled over."""

    min_score: float
    min_size: float
    anonymizer: Anonymizer
    smooth: int
    emulated: bool = False


@dataclass
class Stages:
    """Seconds spent per frame in the writer's stages (the pipeline times its own)."""

    decode: list[float] = field(default_factory=list)
    hide: list[float] = field(default_factory=list)
    encode: list[float] = field(default_factory=list)


class VideoJob:
    def __init__(self, video: Video, faces: Faces, jsonl: Path, media: Path | None) -> None:
        self.video, self.faces, self.jsonl_path, self.media = video, faces, jsonl, media
        self.order: deque[tuple[str, np.ndarray, float]] = deque()  # frames read, in order, not yet written
        self.found: dict[str, Detections | str] = {}  # faces (or why none) by frame, not yet written
        self.ready = threading.Condition()
        self.done_reading = False
        self.error: BaseException | None = None
        self.written = 0
        self.times = Stages()

    def run(self, runner: Runner, pre: Preprocess, batch_size: int, on_progress=None) -> dict:
        """Every frame through `runner`; the summary of what was read, found and written."""
        started = time.perf_counter()
        with FirstInterruptEnds(self.video):
            writer = threading.Thread(target=self._write_all, name="video-writer", daemon=True)
            writer.start()
            try:
                timing = pipeline.run(self._frames(), runner, pre, self._found, batch_size=batch_size,
                                      threshold=self.faces.min_score, on_progress=on_progress, on_bad=self._failed)
            finally:
                with self.ready:
                    self.done_reading = True
                    self.ready.notify_all()
                writer.join()
        if self.error is not None:
            raise self.error
        wall = time.perf_counter() - started
        return {"frames": self.written, "wall_s": round(wall, 3),
                "frames_per_s": round(self.written / wall, 2) if self.written else None,
                "corrupt_frames_skipped": self.video.corrupt, "ended": self.video.ended,
                "fps": round(self.video.fps, 3), "size": list(self.video.size), "pipeline": timing.summary(),
                "writer_ms": {k: round(1e3 * float(np.mean(v)), 3) if v else None for k, v in vars(self.times).items()}}

    # read: the source, in the pipeline's assembler thread
    def _frames(self) -> Iterator[tuple[str, np.ndarray]]:
        started = time.perf_counter()
        for key, rgb, seconds in self.video.open():
            self.times.decode.append(time.perf_counter() - started)
            with self.ready:
                while len(self.order) >= PENDING + 2 * pipeline.MAX_WORKERS and self.error is None:
                    self.ready.wait(0.1)  # the writer is behind: hold the reading back
                if self.error is not None:
                    return
                self.order.append((key, rgb, seconds))
            yield key, rgb
            started = time.perf_counter()

    # found: from the pipeline's post-processing threads, in any order
    def _found(self, key: str, faces: Detections, _outputs: dict) -> None:
        self._put(key, faces)

    def _failed(self, key: str, why: str) -> None:
        self._put(key, why)

    def _put(self, key: str, found: Detections | str) -> None:
        with self.ready:
            if self.error is not None:
                raise RuntimeError("the video writer failed") from self.error
            self.found[key] = found
            self.ready.notify_all()

    # written: in order, by the writer thread
    def _write_all(self) -> None:
        try:
            smoothing = GapFiller(self.faces.smooth) if self.faces.smooth else None
            writer = None
            with open(self.jsonl_path, "w", encoding="utf-8") as jsonl:
                while (next_frame := self._next()) is not None:
                    key, rgb, seconds, found = next_frame
                    if writer is None and self.media is not None:
                        writer = VideoWriter(self.media, rgb.shape[1], rgb.shape[0], self.video.fps)
                    frame = (key, rgb, seconds, found if isinstance(found, str) else None)
                    faces = Detections() if isinstance(found, str) else kept(found, self.faces.min_score,
                                                                              self.faces.min_size)
                    final = smoothing.push(frame, faces) if smoothing else [(frame, faces, [])]
                    for done in final:
                        self._write(done, jsonl, writer)
                for done in smoothing.flush() if smoothing else []:
                    self._write(done, jsonl, writer)
            if writer is not None:
                writer.close()
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by `run`
            with self.ready:
                self.error = exc
                self.ready.notify_all()

    def _next(self) -> tuple[str, np.ndarray, float, Detections | str] | None:
        """The next frame in order once its faces are found; None when the source is done and all is written."""
        with self.ready:
            while True:
                if self.order and self.order[0][0] in self.found:
                    key, rgb, seconds = self.order.popleft()
                    self.ready.notify_all()
                    return key, rgb, seconds, self.found.pop(key)
                if self.done_reading and (not self.order or self.order[0][0] not in self.found):
                    if not self.order:
                        return None
                    key, _, _ = self.order.popleft()  # read, but never handed on (the run stopped): not written
                    continue
                self.ready.wait(0.1)

    def _write(self, done: tuple, jsonl, writer: VideoWriter | None) -> None:
        (key, rgb, seconds, error), faces, filled = done
        t0 = time.perf_counter()
        picture = self._hidden(rgb, faces, error)
        t1 = time.perf_counter()
        if writer is not None:
            writer.write(picture)
        t2 = time.perf_counter()
        jsonl.write(frame_record(int(key), seconds, faces, filled, error, self.faces.emulated) + "\n")
        self.times.hide.append(t1 - t0)
        self.times.encode.append(t2 - t1)
        self.written += 1

    def _hidden(self, rgb: np.ndarray, faces: Detections, error: str | None) -> np.ndarray:
        if error is not None:  # its faces are unknown: nothing of it is shown
            return np.zeros_like(rgb)
        if self.faces.anonymizer.mode == "none":
            return draw_rgb(rgb, faces, label="EMULATED" if self.faces.emulated else None)
        hidden = self.faces.anonymizer.apply(rgb, faces)
        return draw_rgb(hidden, Detections(), label="EMULATED") if self.faces.emulated else hidden


def finish(job: VideoJob, staged: Path | None, final: Path | None) -> dict:
    """The encoded video under its final name, with the source's audio (the span the frames came from) copied
    in; a stream or an image sequence has none to copy."""
    if staged is None or final is None or not staged.exists():
        return {"video": None, "audio": False}
    if job.video.live or "%" in job.video.spec:
        staged.replace(final)
        return {"video": final.name, "audio": False}
    return {"video": final.name, "audio": with_audio(staged, job.video.spec, final, job.video.start, job.video.end)}


STAGE_NAMES = (("decode", "writer_ms", "decode"), ("preprocess", "pipeline", "preprocess"), ("infer", "pipeline", "infer"),
               ("postprocess", "pipeline", "postprocess"), ("hide / draw", "writer_ms", "hide"),
               ("encode", "writer_ms", "encode"))


def stage_ms(summary: dict) -> dict[str, float | None]:
    """Milliseconds a frame per stage, from a video's summary: decode (the source), preprocess, infer and
    post-process (the pipeline's means), hide or draw and encode (the writer's)."""
    return {name: (summary["pipeline"]["mean_ms"] if part == "pipeline" else summary[part]).get(key)
            for name, part, key in STAGE_NAMES}
