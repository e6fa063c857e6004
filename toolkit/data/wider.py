"""WIDER FACE in its official layout: images, ground truth (.mat or .txt) and the easy / medium / hard lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import reading
from toolkit.data.images import IMAGE_SUFFIXES, check_name
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


def list_val_images(root: Path, unreadable: bool = False) -> list[tuple[str, Path]]:
    """(key, path) for every image under WIDER_val/images/<event>/, sorted (`unreadable`: entries that are not
    regular files too, a link to a missing file or a FIFO, for the caller to account for). Two images of one
    name in one event (x.jpg beside x.png) are refused: their predictions would be one file; so is a name
    holding a line break."""
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise InputError(f"{root}: not a WIDER FACE root (no {IMAGES_DIR}/)",
                         "pass the folder that holds WIDER_val/ and eval_tools/")
    out = [(image_key(p.parent.name, p.stem), p) for p in sorted(images.glob("*/*"))
           if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir() and (unreadable or p.is_file())]
    for _, path in out:
        check_name(path)
    if not out:
        raise InputError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    seen: dict[str, Path] = {}
    for key, path in out:
        if key in seen:
            raise InputError(f"{seen[key]} and {path}: two images of one name in one event (their predictions would "
                             "be one file)", "rename or remove one of them")
        seen[key] = path
    return out


def not_a_file(path: Path) -> str | None:
    """Why an image entry cannot be read as a file (a link to a missing file, a FIFO, a device), or None."""
    try:
        reading.regular_file(path, "image file")
    except InputError as exc:
        return exc.message
    return None


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
        for s, kept in images[key].keep.items():
            if len(kept) and (kept.min() < 0 or kept.max() >= len(b)):
                raise InputError(f"{setting_files[s]}: {key} lists face {int(kept.max()) + 1}, but {source} gives "
                                 f"it {len(b)} faces")
    return GroundTruth(images, source)


def _first(root: Path, candidates: list[Path]) -> Path | None:
    return next((root / c for c in candidates if (root / c).is_file()), None)


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    reading.regular_file(path, "MATLAB file")
    try:
        return loadmat(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable MATLAB file ({type(exc).__name__})") from None


def _iter_mat(mat: dict, field: str, path: Path) -> list[tuple[str, np.ndarray]]:
    """(key, array) over the nested event/file cell arrays of a WIDER .mat file; fields of another structure
    are one line."""
    try:
        events, files, values = mat["event_list"], mat["file_list"], mat[field]
    except KeyError as exc:
        raise InputError(f"{path}: no {exc.args[0]!r} field: not a WIDER FACE ground-truth file") from None
    found = []
    try:
        for i in range(len(events)):
            event = str(events[i][0][0])
            names, vals = files[i][0], values[i][0]
            if len(names) != len(vals):
                raise ValueError(f"event {event}: {len(names)} files, {len(vals)} entries")
            for j in range(len(names)):
                found.append((image_key(event, str(names[j][0][0])), vals[j][0]))
    except (IndexError, TypeError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: {field!r} is not laid out as in WIDER FACE's ground truth ({type(exc).__name__}: "
                         f"{exc})") from None
    return found


def _boxes_from_mat(path: Path) -> dict[str, np.ndarray]:
    return _arrays(path, "face_bbx_list", lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 4))


def _keep_from_mat(path: Path) -> dict[str, np.ndarray]:
    return _arrays(path, "gt_list", lambda v: np.asarray(v, dtype=np.int64).reshape(-1) - 1)


def _arrays(path: Path, field: str, convert) -> dict[str, np.ndarray]:
    """Each image's array of `field`, converted (boxes: n x 4 numbers; lists: face numbers), else one line."""
    found = {}
    for key, value in _iter_mat(_loadmat(path), field, path):
        try:
            found[key] = convert(value)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: {field!r} of {key} is not what WIDER FACE's ground truth holds "
                             f"({type(exc).__name__}: {exc})") from None
    return found


def _boxes_from_txt(path: Path) -> dict[str, np.ndarray]:
    """wider_face_val_bbx_gt.txt: path line, count line, then `x y w h` + 6 attributes per face
    (an image with no face still has one all-zero line)."""
    lines = reading.read_text(path, limit=None).splitlines()
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
