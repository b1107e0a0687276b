"""Data sets (host-only: parsing and downloads in NumPy): the bundled MNIST subset, MNIST and Fashion-MNIST (downloaded and cached), or any folder of IDX files.

    >>> from tinyvae import datasets
    >>> data = datasets.load("mnist-small")   # bundled, works offline
    >>> data.x_train.shape, data.x_train.dtype, data.y_test.shape
    ((10000, 784), dtype('float32'), (2000,))

Where ``load("mnist")`` / ``load("fashion-mnist")`` look for their files, first match wins:
``root`` (the folder itself), ``$TINYVAE_DATA/<name>``, ``cache_dir()/<name>``. Files already there are used as
they are (only checked structurally, so a re-encoded prefix of MNIST works); missing ones are downloaded.
A registered name wins over a folder of the same name: write ``"./mnist"`` to mean the folder.

Any registered name with the suffix ``-binarized`` (``"mnist-binarized"``) gives its pixels thresholded at 0.5
(1 where the grey level is above half, else 0): a fixed binarization, for comparison with likelihoods reported on
binarized MNIST (the literature also uses Larochelle's fixed set and per-epoch random binarization; the figures
are close but not identical). Without it, pixels are grey levels in [0, 1] and a Bernoulli likelihood's nats are
not comparable with binarized-MNIST results.
"""
# Host-only: file parsing and downloads; uses NumPy directly, never the active array backend.

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import download as _download  # aliased: load() has a `download` flag
from .idx import read_idx
from ..errors import InputError, MissingFileError

__all__ = ["DATASETS", "Dataset", "binarize", "cache_dir", "load", "per_class_subset", "read_idx"]

DATASETS = ("mnist-small", "mnist", "fashion-mnist")
BINARIZED = "-binarized"
# (split, images file, labels file); each may also be present uncompressed (without ".gz").
_FILES = (
    ("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
)
_BUNDLED = Path(__file__).parent / "data" / "mnist-small"


@dataclass(frozen=True, eq=False, repr=False)  # eq=False: comparing arrays with == is not a bool
class Dataset:
    """Images flattened to float32 rows in [0, 1] (pixels / 255), labels as int64."""

    name: str
    x_train: np.ndarray  # (N_train, H*W) float32
    y_train: np.ndarray  # (N_train,) int64
    x_test: np.ndarray   # (N_test, H*W) float32
    y_test: np.ndarray   # (N_test,) int64
    image_shape: tuple = (28, 28)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, x_train={self.x_train.shape}, y_train={self.y_train.shape}, "
                f"x_test={self.x_test.shape}, y_test={self.y_test.shape}, image_shape={self.image_shape})")


def cache_dir() -> Path:
    """The per-user cache folder for downloads, following each platform's convention."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec says ignore relative paths
    return Path(base) / "tinyvae"


def load(name: str | os.PathLike, root: str | os.PathLike | None = None, download: bool = True,
         progress: bool = True) -> Dataset:
    """Load ``"mnist-small"``, ``"mnist"``, ``"fashion-mnist"`` or a folder holding the four IDX files.

    ``root`` is the folder holding the files of a named data set (default ``$TINYVAE_DATA/<name>``, else
    ``cache_dir()/<name>``). Missing files are downloaded (md5-checked) when ``download`` is true; mirrors and
    checksums come from ``tinyvae.datasets.download.MIRRORS`` / ``.MD5``. A folder this call created for a download
    that failed is removed again. ``NAME-binarized`` thresholds the pixels at 0.5 (see the module docstring).
    """
    if isinstance(name, str) and name.endswith(BINARIZED) and name[:-len(BINARIZED)] in DATASETS:
        data = load(name[:-len(BINARIZED)], root=root, download=download, progress=progress)
        return Dataset(name, (data.x_train > 0.5).astype(np.float32), data.y_train,
                       (data.x_test > 0.5).astype(np.float32), data.y_test, data.image_shape)
    if name == "mnist-small":
        return _read_folder("mnist-small", _BUNDLED)
    if name in ("mnist", "fashion-mnist"):
        folder = _data_folder(name, root)
        missing = [f for _, *pair in _FILES for f in pair if _find(folder, f) is None]
        if missing and not download:
            raise MissingFileError(
                f"{name}: {', '.join(missing)} not found in {folder}. Pass download=True to fetch them, or point "
                f"root= (on the command line: --dataset FOLDER; or the TINYVAE_DATA environment variable, which "
                f"holds a '{name}' subfolder) at a folder "
                "that holds them.")
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            for filename in missing:
                _download.fetch(filename, folder, _download.MIRRORS[name], _download.MD5[name][filename], progress)
        except BaseException:
            for p in created:  # innermost first; only folders this call made, and only while still empty
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
            raise
        return _read_folder(name, folder)
    if Path(name).is_dir():
        return _read_folder(str(name), Path(name))
    raise InputError(f"unknown dataset {str(name)!r}: expected one of {', '.join(DATASETS)} (each also as "
                     f"NAME{BINARIZED}), or the path of an "
                     "existing folder holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                     "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")


def _data_folder(name: str, root) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get("TINYVAE_DATA"):
        return Path(os.environ["TINYVAE_DATA"]) / name
    return cache_dir() / name


def _find(folder: Path, gz_name: str) -> Path | None:
    """The file as downloaded (.gz) or as unpacked by hand (no suffix), whichever exists."""
    for candidate in (folder / gz_name, folder / gz_name[:-3]):
        if candidate.is_file():
            return candidate
    return None


def _read_folder(name: str, folder: Path) -> Dataset:
    missing = [f for _, *pair in _FILES for f in pair if _find(folder, f) is None]
    if missing:
        raise MissingFileError(f"{name}: {', '.join(missing)} (or without .gz) not found in {folder}")
    arrays, shapes = {}, set()
    for split, images_name, labels_name in _FILES:
        images_path, labels_path = _find(folder, images_name), _find(folder, labels_name)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise InputError(f"{images_path}: expected uint8 images of shape (N, rows, cols), "
                             f"got {images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise InputError(f"{labels_path}: expected integer labels of shape (N,), "
                             f"got {labels.dtype} of shape {labels.shape}")
        if len(images) != len(labels):
            raise InputError(f"{name}: {split} set has {len(images)} images ({images_path.name}) but "
                             f"{len(labels)} labels ({labels_path.name}); the counts must agree")
        shapes.add(images.shape[1:])
        arrays[f"x_{split}"] = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
        arrays[f"y_{split}"] = labels.astype(np.int64)
    if len(shapes) != 1:
        raise InputError(f"{name}: train and test images differ in size: {sorted(shapes)}")
    return Dataset(name, image_shape=shapes.pop(), **arrays)


# ---- CS236 homework 2: a fixed random binarization and a reproducible labeled subset ----
def binarize(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed random binarization of pixel intensities x in [0, 1]: 1 with probability x, else 0, drawn from
    ``np.random.default_rng(seed)`` in row-major order (so the same seed gives the same bits on every machine and
    backend; row i of a set's binarization does not depend on the rows after it). float32, x's shape.

    Training on binarized MNIST draws a NEW binarization at every batch ("dynamic"; ``train.bernoulli_binarize``);
    a test figure needs a fixed one, which this is. Unlike ``NAME-binarized`` (a threshold at 0.5) it keeps the
    grey levels' statistics: a pixel of 0.3 is on in 30% of the draws.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or (x.size and (x.min() < 0 or x.max() > 1)):
        raise InputError(f"binarize: expected pixel intensities in [0, 1] as floats, got {x.dtype} values"
                         + (f" from {x.min()} to {x.max()}" if x.size else ""))
    return (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)


def per_class_subset(labels: np.ndarray, per_class: int = 10, classes: int = 10) -> np.ndarray:
    """The indices of the first ``per_class`` examples of each class, in file order: class 0's first, then
    class 1's, ... (an int64 array of per_class * classes indices). CS236's 100 labeled images (10 per digit) and
    its 100-image test subset can be chosen this way (``reproduce --subsets first``); the homework's own hand-picked
    ones are ``cs236_subset``."""
    labels = np.asarray(labels)
    chosen = []
    for c in range(classes):
        idx = np.flatnonzero(labels == c)[:per_class]
        if len(idx) < per_class:
            raise InputError(f"per_class_subset: class {c} has only {len(idx)} examples, {per_class} are needed")
        chosen.append(idx)
    return np.concatenate(chosen).astype(np.int64)


# The 10 images of each digit that CS236's homework 2 picked by hand (its starter code's ``get_mnist_index``): entry
# [c][i] is a position among the images of digit c, in file order. Each table names one image twice (digit 4 of the
# training table: 2176; digit 5 of the test table: 128), so 99 distinct images stand for 100, as in the homework.
CS236_LABELED_TRAIN = (
    (2732, 2607, 1653, 3264, 4931, 4859, 5827, 1033, 4373, 5874),
    (5924, 3468, 6458, 705, 2599, 2135, 2222, 2897, 1701, 537),
    (2893, 2163, 5072, 4851, 2046, 1871, 2496, 99, 2008, 755),
    (797, 659, 3219, 423, 3337, 2745, 4735, 544, 714, 2292),
    (151, 2723, 3531, 2930, 1207, 802, 2176, 2176, 1956, 3622),
    (3560, 756, 4369, 4484, 1641, 3114, 4984, 4353, 4071, 4009),
    (2105, 3942, 3191, 430, 4187, 2446, 2659, 1589, 2956, 2681),
    (4180, 2251, 4420, 4870, 1071, 4735, 6132, 5251, 5068, 1204),
    (3918, 1167, 1684, 3299, 2767, 2957, 4469, 560, 5425, 1605),
    (5795, 1472, 3678, 256, 3762, 5412, 1954, 816, 2435, 1634))
CS236_TEST_SUBSET = (
    (684, 559, 629, 192, 835, 763, 707, 359, 9, 723),
    (277, 599, 1094, 600, 314, 705, 551, 87, 174, 849),
    (537, 845, 72, 777, 115, 976, 755, 448, 850, 99),
    (984, 177, 755, 797, 659, 147, 910, 423, 288, 961),
    (265, 697, 639, 544, 543, 714, 244, 151, 675, 510),
    (459, 882, 183, 28, 802, 128, 128, 53, 550, 488),
    (756, 273, 335, 388, 617, 42, 442, 543, 888, 257),
    (57, 291, 779, 430, 91, 398, 611, 908, 633, 84),
    (203, 324, 774, 964, 47, 639, 131, 972, 868, 180),
    (1000, 846, 143, 660, 227, 954, 791, 719, 909, 373))


def cs236_subset(labels: np.ndarray, split: str) -> np.ndarray:
    """The indices of CS236's hand-picked images in a set whose labels are ``labels`` (MNIST's, in file order):
    ``split`` "train" gives the homework's 100 labeled training images, "test" its 100-image test subset; digit 0's
    ten first, then digit 1's, ... (an int64 array of 100 indices)."""
    table = {"train": CS236_LABELED_TRAIN, "test": CS236_TEST_SUBSET}.get(split)
    if table is None:
        raise InputError(f"cs236_subset: split must be 'train' or 'test', got {split!r}")
    labels = np.asarray(labels)
    chosen = []
    for c, positions in enumerate(table):
        of_class = np.flatnonzero(labels == c)
        if len(of_class) <= max(positions):
            raise InputError(f"cs236_subset: the homework's {split} subset needs image {max(positions)} of digit {c}, "
                             f"but this set has {len(of_class)} of them: it is MNIST's full {split} set only")
        chosen.append(of_class[list(positions)])
    return np.concatenate(chosen).astype(np.int64)
