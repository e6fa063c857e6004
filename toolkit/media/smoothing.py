"""Temporal smoothing: a face found in frames t-k and t+j but missed in between (k + j - 1 <= `frames`) is
covered in the frames between, its box interpolated from the two it was found in.

Why gap filling and not holding the last box: a held box stays where the face was while the face moves on, and
covers empty picture after a face has left; interpolating between the frames that found it follows the face and
fills only true gaps. Its cost is `frames` + 1 frames of delay before a frame is written (no tracker state beyond
that window, no model). Matching is by IoU, so a face that moves more than its own size between the two frames
is not filled."""

from __future__ import annotations

from collections import deque

import numpy as np

from toolkit.postprocess import Detections, iou_matrix

MATCH_IOU = 0.3


class GapFiller:
    """Frames go in with their faces and come out `frames` frames later, final: (frame, faces, indices of the
    faces filled in)."""

    def __init__(self, frames: int, iou: float = MATCH_IOU) -> None:
        self.frames, self.iou = frames, iou
        self.window: deque[list] = deque()  # [frame, faces, filled indices]

    def push(self, frame: object, faces: Detections) -> list[tuple[object, Detections, list[int]]]:
        for lag in range(2, min(self.frames + 1, len(self.window)) + 1):  # gaps of lag - 1 frames
            self._fill(faces, lag)
        self.window.append([frame, faces, []])
        done = []
        while len(self.window) > self.frames + 1:  # the oldest kept is the far end of the longest gap
            done.append(tuple(self.window.popleft()))
        return done

    def flush(self) -> list[tuple[object, Detections, list[int]]]:
        done = [tuple(entry) for entry in self.window]
        self.window.clear()
        return done

    def _fill(self, faces: Detections, lag: int) -> None:
        """Faces of the new frame also found `lag` frames back and in no frame between: interpolated between."""
        first = len(self.window) - lag  # the frame `lag` back; the new frame would be at len(window)
        before = self.window[first][1]
        if not len(faces) or not len(before):
            return
        overlap = iou_matrix(before.boxes, faces.boxes)
        for i, j in zip(*np.nonzero(overlap >= self.iou)):
            steps = [(first + step, step / lag) for step in range(1, lag)]
            boxes = [before.boxes[i] + (faces.boxes[j] - before.boxes[i]) * t for _, t in steps]
            if any(len(self.window[at][1]) and iou_matrix(box[None], self.window[at][1].boxes).max() >= self.iou
                   for (at, _), box in zip(steps, boxes)):
                continue  # found in between: no gap
            score = np.array([min(before.scores[i], faces.scores[j])], np.float32)
            for (at, t), box in zip(steps, boxes):
                marks = before.landmarks[i] + (faces.landmarks[j] - before.landmarks[i]) * t
                found = self.window[at][1]
                self.window[at][2].append(len(found))
                self.window[at][1] = Detections.joined([found, Detections(box[None].astype(np.float32), score,
                                                                          marks[None].astype(np.float32))])
