"""WIDER FACE in its official layout: images, ground truth (.mat or .txt) and the easy / medium / hard lists."""

from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.data.images import IMAGE_SUFFIXES
from toolkit.errors import InputError

SETTINGS = ("easy", "medium", "hard")
IMAGES_DIR = Path("WIDER_val") / "images"
GT_DIR = Path("eval_tools") / "ground_truth"
GT_TXT = Path("wider_face_split") / "wider_face_val_bbx_gt.txt"


@dataclass
class ImageTruth:
    boxes: np.ndarray  # (n, 4) float64 x y w h
    keep: dict[str, np.ndarray]  # setting -> 0-based indices of faces that count (others are ignored)


@dataclass
class GroundTruth:
    images: dict[str, ImageTruth]  # key "event/image_stem"
    source: str

    def restricted(self, keys: set[str]) -> GroundTruth:
        return GroundTruth({k: v for k, v in self.images.items() if k in keys}, self.source)


def image_key(event: str, stem: str) -> str:
    return f"{event}/{stem}"


def list_val_images(root: Path, dangling: bool = False) -> list[tuple[str, Path]]:
    """(key, path) for every image under WIDER_val/images/<event>/, sorted (`dangling`: links to a missing
    file too). Two images of one name in one event (x.jpg beside x.png) are refused: their predictions
    would be one file."""
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise InputError(f"{root}: not a WIDER FACE root (no {IMAGES_DIR}/)",
                         "pass the folder that holds WIDER_val/ and eval_tools/")
    out = [(image_key(p.parent.name, p.stem), p) for p in sorted(images.glob("*/*"))
           if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or dangling and p.is_symlink())]
    if not out:
        raise InputError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    seen: dict[str, Path] = {}
    for key, path in out:
        if key in seen:
            raise InputError(f"{seen[key]} and {path}: two images of one name in one event (their predictions would "
                             "be one file)", "rename or remove one of them")
        seen[key] = path
    return out


def missing_target(path: Path) -> str | None:
    """Why an image entry cannot be read as a file (a link to a missing file), or None."""
    return None if path.is_file() else f"{path}: a link to {os.readlink(path)}, which does not exist"


def load_ground_truth(root: Path) -> GroundTruth:
    """Boxes from eval_tools/ground_truth/wider_face_val.mat (or wider_face_split's .mat / .txt),
    settings from wider_{easy,medium,hard}_val.mat (the official lists; they exist only as .mat)."""
    root = Path(root)
    setting_files = {s: _first(root, [GT_DIR / f"wider_{s}_val.mat", Path(f"wider_{s}_val.mat")]) for s in SETTINGS}
    missing = [s for s, p in setting_files.items() if p is None]
    if missing:
        raise InputError(
            f"{root}: missing {', '.join(f'wider_{s}_val.mat' for s in missing)} under {GT_DIR}/",
            "the easy / medium / hard lists ship only in the official eval_tools ground truth",
        )
    boxes_mat = _first(root, [GT_DIR / "wider_face_val.mat", Path("wider_face_split/wider_face_val.mat"),
                              Path("wider_face_val.mat")])
    if boxes_mat is not None:
        boxes, source = _boxes_from_mat(boxes_mat), str(boxes_mat)
    elif (root / GT_TXT).is_file():
        boxes, source = _boxes_from_txt(root / GT_TXT), str(root / GT_TXT)
    else:
        raise InputError(f"{root}: no wider_face_val.mat or {GT_TXT}")
    keeps = {s: _keep_from_mat(p) for s, p in setting_files.items()}
    images = {}
    for key, b in boxes.items():
        images[key] = ImageTruth(b, {s: keeps[s].get(key, np.zeros(0, np.int64)) for s in SETTINGS})
    return GroundTruth(images, source)


def _first(root: Path, candidates: list[Path]) -> Path | None:
    return next((root / c for c in candidates if (root / c).is_file()), None)


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable MATLAB file ({type(exc).__name__})") from None


def _iter_mat(mat: dict, field: str, path: Path):
    """Yield (key, array) over the nested event/file cell arrays of a WIDER .mat file."""
    try:
        events, files, values = mat["event_list"], mat["file_list"], mat[field]
    except KeyError as exc:
        raise InputError(f"{path}: no {exc.args[0]!r} field: not a WIDER FACE ground-truth file") from None
    for i in range(len(events)):
        event = str(events[i][0][0])
        names, vals = files[i][0], values[i][0]
        for j in range(len(names)):
            yield image_key(event, str(names[j][0][0])), vals[j][0]


def _boxes_from_mat(path: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 4)
            for k, v in _iter_mat(_loadmat(path), "face_bbx_list", path)}


def _keep_from_mat(path: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.int64).reshape(-1) - 1 for k, v in _iter_mat(_loadmat(path), "gt_list", path)}


def read_text(path: Path) -> str:
    """A text file as UTF-8, or one line naming the file and the first byte that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def _boxes_from_txt(path: Path) -> dict[str, np.ndarray]:
    """wider_face_val_bbx_gt.txt: path line, count line, then `x y w h` + 6 attributes per face
    (an image with no face still has one all-zero line)."""
    lines = read_text(path).splitlines()
    out: dict[str, np.ndarray] = {}
    i = 0
    at = 0  # the line being read, for the error
    try:
        while i < len(lines):
            rel = lines[i].strip()
            if not rel:
                i += 1
                continue
            at = i + 1
            count = int(lines[at])
            if count < 0:
                raise ValueError(count)
            boxes = []
            for at in range(i + 2, i + 2 + max(count, 1)):
                boxes.append([float(v) for v in lines[at].split()[:4]])
                if len(boxes[-1]) != 4:
                    raise ValueError(lines[at])
            event, name = rel.split("/")[-2:]
            out[image_key(event, Path(name).stem)] = np.array(boxes[:count], dtype=np.float64).reshape(-1, 4)
            i += 2 + max(count, 1)
    except (ValueError, IndexError):
        raise InputError(f"{path}:{at + 1}: malformed WIDER ground-truth line") from None
    return out
