"""Where `detect` puts what it found in a video: JSON Lines (one record per frame, named fields), and the video
itself with its faces hidden or drawn, in the source's container and frame rate, the source's audio copied in
(PyAV: encoded here, the audio remuxed without re-encoding)."""

from __future__ import annotations

import heapq
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.postprocess import Detections

# The container's usual codec, encoded fast: the encoder shares the cores with inference. x264's superfast at
# CRF 23 takes 10.6 ms of CPU a 720p frame against veryfast's 16.5 (CRF 20), for 474 against 381 KB a second
# (60 frames of a WIDER pan, AMD EPYC 2-core VM).
CODECS = {".webm": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "b": "4M"}),
          ".avi": ("mpeg4", {"qscale": "3"})}
DEFAULT_CODEC = ("libx264", {"preset": "superfast", "crf": "23"})


def frame_record(index: int, seconds: float, faces: Detections | None, filled: list[int] = (),
                 error: str | None = None, emulated: bool = False) -> str:
    """One JSON Lines record: the frame's index and time, and its faces with named fields (or why it has none)."""
    record: dict = {"frame": index, "time": round(seconds, 3)}
    if error is not None:
        record["error"] = error
    else:
        record["faces"] = faces.as_json(filled)
    if emulated:
        record["emulated"] = True
    return json.dumps(record, separators=(",", ":"))


class VideoWriter:
    """Frames in order into `path` (its suffix names the container) at `fps`."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        import av

        codec, options = CODECS.get(path.suffix.lower(), DEFAULT_CODEC)
        self.path, self.frames = path, 0
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(100000), options=options)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2  # 4:2:0 takes even sizes
        self.stream.pix_fmt = "yuv420p"
        self.av = av

    def write(self, rgb: np.ndarray) -> None:
        height, width = self.stream.height, self.stream.width
        if rgb.shape[:2] != (height, width):  # an odd side: its last row or column repeated
            rgb = np.pad(rgb, ((0, height - rgb.shape[0]), (0, width - rgb.shape[1]), (0, 0)), mode="edge")
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> int:
        """Flush the encoder and finish the file; the frames written."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        return self.frames


def with_audio(video: Path, source: str, out: Path, start: float, end: float | None) -> bool:
    """`video` with the source's first audio stream (the span `start`..`end`, moved to start at 0) copied in, as
    `out`; False (and `out` as `video`) where the source has no audio. Packets are interleaved by time."""
    import av

    with av.open(source) as src:
        if not src.streams.audio:
            video.replace(out)
            return False
        with av.open(str(video)) as picture, av.open(str(out), "w") as muxed:
            streams = {"video": muxed.add_stream_from_template(picture.streams.video[0]),
                       "audio": muxed.add_stream_from_template(src.streams.audio[0])}
            packets = heapq.merge(_timed(picture.demux(picture.streams.video[0]), "video", 0.0, None),
                                  _timed(src.demux(src.streams.audio[0]), "audio", start, end), key=lambda p: p[0])
            for _, kind, packet in packets:
                packet.stream = streams[kind]
                muxed.mux(packet)
    video.unlink()
    return True


def _timed(packets, kind: str, start: float, end: float | None):
    """(seconds, kind, packet) for the packets in the span, their timestamps moved back by `start`."""
    for packet in packets:
        if packet.dts is None or packet.pts is None:
            continue
        seconds = float(packet.pts * packet.time_base)
        if (start > 0 and seconds < start) or (end is not None and seconds >= end):  # from 0: the encoder's priming too
            continue
        shift = int(round(start / packet.time_base))
        packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
        yield seconds - start, kind, packet


def check_writable_codec(suffix: str) -> None:
    """The container's codec is one this PyAV build encodes."""
    import av

    codec = CODECS.get(suffix.lower(), DEFAULT_CODEC)[0]
    if codec not in av.codecs_available:
        raise InputError(f"cannot write a {suffix} video: this PyAV build has no {codec} encoder")
