"""Where `detect` takes its pictures from: image files, and frames of a video file, an image sequence, a stream
(RTSP, HTTP) or a camera, decoded by PyAV (its own FFmpeg; a camera through OpenCV's capture). A source yields
(key, RGB frame) in order, for the pipeline; it counts the frames it could not decode and says how it ended."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit import reading
from toolkit.data.images import IMAGE_SUFFIXES, check_name, list_images
from toolkit.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_S = (10.0, 10.0)  # a stream's open and read timeouts: a stream that stops answering has dropped


def is_video(spec: str) -> bool:
    """A video file, an image sequence (a printf pattern such as frames/%05d.png), a stream URL or a camera index."""
    return (spec.lower().endswith(VIDEO_SUFFIXES) or "%" in Path(spec).name or spec.startswith(STREAM_SCHEMES)
            or spec.isdigit())


@dataclass
class Video:
    """A video source: its frames in order, and what became of the ones it could not decode."""

    spec: str  # as the user named it
    start: float = 0.0  # seconds
    end: float | None = None
    fps_for_sequence: float = 25.0  # an image sequence has no frame rate of its own
    corrupt: int = 0  # frames that could not be decoded, skipped
    ended: str = "not started"  # how it ended: "end of file", "stopped at --end", "dropped: ...", "stopped (Ctrl-C)"
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)  # width, height
    frames: int | None = None  # the frames of the span, as the container announces them (None: a stream)
    audio: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def live(self) -> bool:
        return self.spec.startswith(STREAM_SCHEMES) or self.spec.isdigit()

    @property
    def name(self) -> str:
        """A file name for its outputs."""
        if self.spec.isdigit():
            return f"camera{self.spec}"
        if self.spec.startswith(STREAM_SCHEMES):
            return "stream"
        if "%" in self.spec:
            return Path(self.spec).name.split("%")[0].rstrip("._-") or "sequence"
        return Path(self.spec).stem

    @property
    def suffix(self) -> str:
        """The container its output video is written in: the source's own (a sequence or a stream: mp4)."""
        suffix = Path(self.spec).suffix.lower()
        return suffix if suffix in VIDEO_SUFFIXES and not self.live else ".mp4"

    def open(self) -> Iterator[tuple[str, np.ndarray, float]]:
        """(key, RGB frame, seconds) for every frame in the span, in order."""
        if self.spec.isdigit():
            return self._camera()
        return self._decoded()

    def stop(self) -> None:
        """End the source after the frame being read (a live stream's Ctrl-C)."""
        self._stop.set()

    def check(self) -> None:
        """What can be known before the source is opened: a video file is a regular file of a plain name, an image
        sequence's folder exists."""
        if "%" in self.spec:
            reading.folder(Path(self.spec).parent, "folder of an image sequence")
        elif not self.live:
            check_name(Path(self.spec))
            reading.regular_file(self.spec, "video file")

    def _container(self):
        import av

        self.check()
        options = {"framerate": str(self.fps_for_sequence)} if "%" in self.spec else {}
        try:
            return av.open(self.spec, format="image2" if "%" in self.spec else None, options=options,
                           timeout=OPEN_TIMEOUT_S if self.live else None)
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{self.spec}: cannot be opened as a video ({_said(exc)})") from None

    def _decoded(self) -> Iterator[tuple[str, np.ndarray, float]]:
        import av

        container = self._container()
        try:
            if not container.streams.video:
                raise InputError(f"{self.spec}: holds no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"  # frame threads would carry one damaged frame's error into the next ones
            # a frame whose data is damaged fails to decode (and is counted, skipped) instead of being concealed
            stream.codec_context.options = {"err_detect": "explode"}
            self._describe(container, stream)
            if self.start > 0:
                container.seek(int(self.start / stream.time_base), stream=stream, backward=True)
            yield from self._frames(container, stream, av)
        finally:
            container.close()

    def _describe(self, container, stream) -> None:
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else self.fps_for_sequence
        self.size = (stream.codec_context.width, stream.codec_context.height)
        if stream.frames:  # the span's share of what the container announces
            last = min(stream.frames, round(self.end * self.fps)) if self.end is not None else stream.frames
            self.frames = max(0, last - round(self.start * self.fps))
        self.audio = bool(container.streams.audio)

    def _frames(self, container, stream, av) -> Iterator[tuple[str, np.ndarray, float]]:
        self.ended = "end of file" if not self.live else "the stream ended"
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    self.ended = "stopped (Ctrl-C)"
                    return
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    self.corrupt += 1
                    continue
                for frame in decoded:
                    seconds = float(frame.time) if frame.time is not None else 0.0
                    if seconds < self.start:
                        continue
                    if self.end is not None and seconds >= self.end:
                        self.ended = f"stopped at --end {self.end:g} s"
                        return
                    yield f"{round(seconds * self.fps):08d}", frame.to_ndarray(format="rgb24"), seconds
        except (av.error.FFmpegError, OSError) as exc:
            if not self.live:
                raise InputError(f"{self.spec}: cannot be read on ({_said(exc)})") from None
            self.ended = f"dropped: {_said(exc)}"

    def _camera(self) -> Iterator[tuple[str, np.ndarray, float]]:
        """A camera by index, through OpenCV's capture (V4L2); a live source: Ctrl-C or --end ends it."""
        import time

        import cv2

        capture = cv2.VideoCapture(int(self.spec))
        if not capture.isOpened():
            raise InputError(f"camera {self.spec}: cannot be opened (no /dev/video{self.spec}, or it is busy)")
        try:
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            self.size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            started, index = time.monotonic(), 0
            while not self._stop.is_set():
                ok, bgr = capture.read()
                if not ok:
                    self.ended = "dropped: the camera gave no frame"
                    return
                seconds = time.monotonic() - started
                if self.end is not None and seconds >= self.end:
                    self.ended = f"stopped at --end {self.end:g} s"
                    return
                yield f"{index:08d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), seconds
                index += 1
            self.ended = "stopped (Ctrl-C)"
        finally:
            capture.release()


class FirstInterruptEnds:
    """For a live source: the first Ctrl-C ends it (what was written is kept, whole), a second one aborts."""

    def __init__(self, video: Video) -> None:
        self.video, self.previous = video, None

    def __enter__(self) -> FirstInterruptEnds:
        if self.video.live and threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._interrupted)
        return self

    def _interrupted(self, signum: int, frame: object) -> None:
        if self.video._stop.is_set():
            raise KeyboardInterrupt
        self.video.stop()

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def expand(specs: list[str]) -> tuple[list[Path], list[str]]:
    """The images and the videos the command line names: a folder gives its images and its videos."""
    images, videos = [], []
    for spec in specs:
        path = Path(spec)
        if is_video(spec):
            Video(spec).check()
            videos.append(spec)
            continue
        found_videos = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES) \
            if path.is_dir() else []
        videos += found_videos
        if not found_videos or any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")):
            images += list_images(path)
    return images, videos


def _said(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
