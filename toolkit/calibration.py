"""Calibration sets: a recipe (calibration/*.toml) -> float32 batches of real WIDER FACE images at
the target's input shape, stored once with a manifest and reused while the recipe is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from toolkit import fileio, reading, schema
from toolkit.data.images import list_images, read_rgb
from toolkit.data.preprocess import Preprocess
from toolkit.data.wider import IMAGES_DIR, image_key
from toolkit.errors import InputError
from toolkit.paths import REPO_ROOT
from toolkit.target import Target

RECIPES_DIR = REPO_ROOT / "calibration"
MANIFEST = "manifest.json"
RECIPE_KEYS = {"images": schema.TEXT, "count": schema.whole(1), "preprocess": schema.TEXT, "size": schema.SIZE,
               "batch_size": schema.whole(1)}


@dataclass(frozen=True)
class Recipe:
    name: str
    images: str  # list file under calibration/
    count: int
    preprocess: str
    size: tuple[int, int] | None
    batch_size: int
    folder: str | None = None  # --calib-data: the user's own images instead of the recipe's WIDER list

    def pre(self) -> Preprocess:
        return Preprocess(self.preprocess, *(self.size or (None, None)))

    def image_paths(self, data_root: Path) -> list[Path]:
        """The calibration images: the first `count` of the user's folder, else the recipe's under `data_root`."""
        if self.folder is not None:
            return self._folder_images()
        return [data_root / IMAGES_DIR / n for n in self.image_names()]

    def _folder_images(self) -> list[Path]:
        return list_images(reading.folder(self.folder, "calibration image folder"))[: self.count]

    def source(self) -> str:
        """Where the images came from, in words (the manifest and result.json keep it)."""
        if self.folder is not None:
            return f"the user's folder {self.folder} (--calib-data)"
        return f"the recipe's WIDER list calibration/{self.images}"

    def image_names(self) -> list[str]:
        if self.folder is not None:
            return [str(p) for p in self._folder_images()]
        listing = reading.inside(RECIPES_DIR, self.images, RECIPES_DIR / f"{self.name}.toml")
        if not os.path.lexists(listing):
            raise InputError(f"{listing}: no such calibration image list")
        names = [line.strip() for line in reading.read_text(listing, what="image list").splitlines() if line.strip()]
        for name in names:
            reading.inside(Path("."), name, listing)  # a WIDER_val/images/<event>/<name> path, never elsewhere
        if len(names) < self.count:
            raise InputError(f"{listing}: lists {len(names)} images, the recipe asks for {self.count}")
        return names[: self.count]

    def keys(self) -> set[str]:
        """The images' dataset keys (event/stem): what evaluation must leave out."""
        return {image_key(*Path(n).with_suffix("").parts[-2:]) for n in self.image_names()}

    def left_out(self, items: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
        """(key, path) `items` without the calibration images: what an INT8 target's evaluation runs on. A user's
        folder is matched by content too (a WIDER image copied under another name is still left out)."""
        skip = self.keys()
        kept = [(k, p) for k, p in items if k not in skip]
        if self.folder is None:
            return kept
        contents = set(self.contents())
        return [(k, p) for k, p in kept if _sha256(p) not in contents]

    def contents(self) -> list[str]:
        """Each calibration image's sha256 (the user's folder's: recorded, and what evaluation leaves out)."""
        return [_sha256(Path(n)) for n in self.image_names()]

    def key(self) -> str:
        """Identifies the set: any change to the recipe, its image list or (a user's folder) an image's content
        gives another key."""
        extra = {"contents": self.contents()} if self.folder is not None else {}
        text = json.dumps({**asdict(self), "names": self.image_names(), **extra}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(reading.read_bytes(path, limit=None, what="image file")).hexdigest()


def load_recipe(name: str, count: int | None = None, batch_size: int | None = None) -> Recipe:
    """A recipe by name (calibration/<name>.toml) or by path to a .toml file."""
    path = Path(name) if name.endswith(".toml") else RECIPES_DIR / f"{name}.toml"
    name = path.stem
    if not os.path.lexists(path):
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.toml")))
        raise InputError(f"calibration recipe {name!r}: no {path}", f"known recipes: {known}")
    raw = reading.read_toml(path)
    for key in ("images", "count"):
        if key not in raw:
            raise InputError(f"{path}: missing key {key!r}")
    schema.check_table(path, None, raw, RECIPE_KEYS)
    recipe = Recipe(name, raw["images"], raw["count"], raw.get("preprocess", "native"),
                    tuple(raw["size"]) if raw.get("size") else None, raw.get("batch_size", 1))
    if count is not None and count < 1:
        raise InputError(f"--count {count}: calibration takes 1 image or more (leave it out for the recipe's {recipe.count})")
    recipe = replace(recipe, count=recipe.count if count is None else count,
                     batch_size=batch_size or recipe.batch_size)
    if recipe.count < 1 or recipe.batch_size < 1:
        raise InputError(f"calibration recipe {name}: count and batch size must be 1 or more")
    if recipe.preprocess == "native" and recipe.batch_size != 1:
        raise InputError(f"calibration recipe {name}: native sizes differ, so the batch size must be 1")
    recipe.pre()  # validates mode and size
    return recipe


@dataclass
class CalibrationSet:
    folder: Path
    manifest: dict

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    def batches(self) -> Iterator[np.ndarray]:
        for name in self.manifest["batches"]:
            yield reading.npy(reading.inside(self.folder, name, self.folder / MANIFEST), "calibration batch")

    def __len__(self) -> int:
        return len(self.manifest["batches"])


def build(recipe: Recipe, data_root: Path, cache: Path) -> tuple[CalibrationSet, bool]:
    """The calibration set for `recipe` (built now, or reused): returns (set, reused)."""
    folder = cache / f"{recipe.name}-{recipe.key()}"
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        manifest = reading.read_json(manifest_path, {"batches": list, "images": list, "sha256": str})
        if all((folder / b).is_file() for b in manifest["batches"]):
            return CalibrationSet(folder, manifest), True
    pre = recipe.pre()
    names = recipe.image_names()
    paths = recipe.image_paths(data_root)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: calibration image missing ({len(missing)} of {len(paths)})",
                         f"pass the WIDER FACE root that holds {IMAGES_DIR}/, or calibrate on your own images: "
                         "--calib-data DIR (any folder of images)")
    digest = hashlib.sha256()
    batches, shapes = [], []
    for start in range(0, len(paths), recipe.batch_size):
        chunk = np.stack([pre(read_rgb(p))[0] for p in paths[start: start + recipe.batch_size]])
        name = f"batch_{start // recipe.batch_size:03d}.npy"
        fileio.write_with(folder / name, lambda tmp, a=chunk: np.save(tmp, a))
        digest.update(chunk.tobytes())
        batches.append(name)
        shapes.append(list(chunk.shape))
    manifest = {"recipe": asdict(recipe), "key": recipe.key(), "images": names, "source": recipe.source(),
                **({"image_sha256": recipe.contents()} if recipe.folder is not None else {}), "preprocess": pre.as_dict(),
                "batches": batches, "shapes": shapes, "sha256": digest.hexdigest()}
    fileio.write_json(manifest_path, manifest)
    return CalibrationSet(folder, manifest), False


LABEL_PATTERNS = 16  # characters of float patterns a configuration's label shows


@dataclass(frozen=True)
class QuantConfig:
    """One INT8 configuration the sweep tries: a method and the node patterns left in float."""

    method: str
    keep_float: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """For tables: the patterns where they are short ('entropy, float: /head/*'), else how many ('percentile,
        1 float pattern'; a node's full name would not fit a terminal's row). The report's rows list them."""
        shown = " ".join(self.keep_float)
        if not shown or len(shown) <= LABEL_PATTERNS:
            return self.method + (f", float: {shown}" if shown else "")
        return f"{self.method}, {len(self.keep_float)} float pattern{'s' if len(self.keep_float) > 1 else ''}"

    @property
    def slug(self) -> str:
        """For file names: 'entropy', 'entropy-float-head'."""
        return self.method + "".join("-float-" + re.sub(r"[^A-Za-z0-9]+", "", p) for p in self.keep_float)


def recipe_for(target: Target, count: int | None = None) -> Recipe:
    """The recipe a target's [calibration] table names, on the user's images where --calib-data gave a folder."""
    spec = target.extra.get("calibration")
    if not spec:
        raise InputError(f"target {target.name}: no [calibration] table in its target file")
    return replace(load_recipe(spec["recipe"], count=count), folder=spec.get(FOLDER))


FOLDER = "folder"  # the [calibration] key --calib-data sets (never in a target file: a folder is the user's)


def with_images(target: Target, folder: Path | None) -> Target:
    """`target` calibrating on the images of `folder` (--calib-data), checked now: a folder with images in it."""
    if folder is None:
        return target
    spec = target.extra.get("calibration")
    if not spec:
        raise InputError(f"--calib-data {folder}: target {target.name} is not an INT8 target (no [calibration] table)")
    list_images(reading.folder(folder, "calibration image folder"))
    return target.with_extra("calibration", {**spec, FOLDER: str(Path(folder).resolve())})


def configs_for(target: Target, methods: list[str] | None = None) -> list[QuantConfig]:
    """Every method x keep-float variant of the target's [calibration] table (or of `methods`)."""
    spec = target.extra["calibration"]
    chosen = methods or spec.get("methods", ["minmax"])
    variants = spec.get("keep_float", [[]])
    return [QuantConfig(m, tuple(v)) for m in chosen for v in variants]
