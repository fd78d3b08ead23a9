"""Datasets as normalised tensors: digits (bundled), CIFAR-10/100 (python-pickle folders), synthetic.

No torchvision: CIFAR is read from the standard python layout with a restricted unpickler, and training
augmentation (random crop with padding + horizontal flip) is done with tensor ops.
"""

from __future__ import annotations

import functools
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landscape.core.budget import require_memory
from landscape.errors import LandscapeError

DATASETS = ("digits", "cifar10", "cifar100", "synthetic")
_SYNTHETIC = re.compile(r"^synthetic(?:-(\d+)x(\d+)x(\d+))?$")
_CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": (["train"], ["test"], b"fine_labels", 100),
}
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    needs_data_dir: bool = False
    augment: bool = False


def dataset_info(name: str) -> DatasetInfo:
    """Shape and class count of a dataset, without loading it."""
    if name == "digits":
        return DatasetInfo("digits", 10, 1, (8, 8))
    if name in _CIFAR_FILES:
        return DatasetInfo(name, _CIFAR_FILES[name][3], 3, (32, 32), needs_data_dir=True, augment=True)
    m = _SYNTHETIC.match(name)
    if m:
        c, h, w = (int(g) for g in m.groups()) if m.group(1) else (1, 8, 8)
        if min(c, h, w) < 1:
            raise LandscapeError(f"dataset '{name}' has an empty dimension; C, H and W of synthetic-CxHxW must each "
                                 "be at least 1, e.g. synthetic-3x8x8")
        if c * h * w < 2:  # the class prototypes are normalised by their spread, which one value lacks
            raise LandscapeError(f"dataset '{name}' has images of a single value; C·H·W must be at least 2, "
                                 "e.g. synthetic-1x2x2")
        return DatasetInfo(name, 10, c, (h, w))
    raise LandscapeError(f"unknown dataset '{name}'; use one of digits, cifar10, cifar100, synthetic[-CxHxW]")


def _subset(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return x, y
    if n < 1:
        raise LandscapeError(f"n={n}: the number of samples must be at least 1")
    if n > len(y):
        raise LandscapeError(f"n={n} samples asked for, but the split has only {len(y)}")
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


@functools.lru_cache(maxsize=2)
def _digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    # A fixed split (not the user's seed) so every run of every tool sees the same train/test images.
    xtr, xte, ytr, yte = train_test_split(images, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target)
    mean, std = xtr.mean(), xtr.std()
    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((a - mean) / std).unsqueeze(1).contiguous()
    return prep(xtr), torch.from_numpy(ytr).long(), prep(xte), torch.from_numpy(yte).long()


class _CifarUnpickler(pickle.Unpickler):
    """Allows only what CIFAR pickles contain (numpy arrays, builtins), so a hostile file cannot run code."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"),
        ("_codecs", "encode"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _read_cifar_file(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise LandscapeError(f"{path} is not a CIFAR python-pickle batch ({exc})") from None
    if not isinstance(batch, dict):
        raise LandscapeError(f"{path} is not a CIFAR batch: expected a dict with 'data' and labels")
    batch = {(k.encode() if isinstance(k, str) else k): v for k, v in batch.items()}
    if b"data" not in batch or label_key not in batch:
        raise LandscapeError(f"{path} lacks the keys 'data' and '{label_key.decode()}' of a CIFAR batch")
    key = label_key.decode()
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LandscapeError(f"{path}: 'data' and '{key}' must be numbers ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise LandscapeError(f"{path}: 'data' has shape {data.shape} and '{key}' {labels.shape}, "
                             "expected (N, 3072) and (N,)")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise LandscapeError(f"{path}: {int(bad.sum())} '{key}' outside 0..{num_classes - 1} "
                             f"(first: {int(labels[bad][0])}); is this the right dataset?")
    return data, labels


@functools.lru_cache(maxsize=4)
def _cifar(name: str, data_dir: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    train_files, test_files, label_key, num_classes = _CIFAR_FILES[name]
    files = train_files if split == "train" else test_files
    folder = Path(data_dir)
    # Accept the folder itself or its parent holding the archive's cifar-10-batches-py / cifar-100-python.
    for candidate in (folder, folder / "cifar-10-batches-py", folder / "cifar-100-python"):
        if all((candidate / f).is_file() for f in files):
            folder = candidate
            break
    else:
        missing = [f for f in files if not (folder / f).is_file()]
        raise LandscapeError(
            f"{name} data not found in {data_dir}: missing {', '.join(missing)} "
            f"(expected the python-pickle layout: {', '.join(train_files + test_files)})"
        )
    parts = [_read_cifar_file(folder / f, label_key, num_classes) for f in files]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    labels = np.concatenate([p[1] for p in parts])
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in _CIFAR_STATS[name])
    return ((torch.from_numpy(data) - mean) / std).contiguous(), torch.from_numpy(labels)


def _synthetic(info: DatasetInfo, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes (smooth random images) plus noise: learnable but not trivially separable."""
    n = 10000 if split == "train" else 2000
    c, (h, w) = info.in_channels, info.image_size
    # Noise, gathered prototypes and their sum are each n float32 images while the set is built.
    require_memory(3 * 4.0 * n * c * h * w, what=f"the {split} split of {info.name} ({n:,} images of {c}×{h}×{w})",
                   fix="use smaller images (synthetic-CxHxW)")
    proto_gen = torch.Generator().manual_seed(1234)
    protos = torch.nn.functional.avg_pool2d(
        torch.randn(info.num_classes, c, h + 2, w + 2, generator=proto_gen), 3, stride=1
    )
    protos = protos / protos.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    y = torch.randint(info.num_classes, (n,), generator=gen)
    x = protos[y] * 0.5 + torch.randn(n, c, h, w, generator=gen)
    return x.contiguous(), y


def load_dataset(
    name: str, *, split: str = "train", n: int | None = None, seed: int = 0, data_dir: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``: float32 ``(N, C, H, W)`` normalised as the models expect, int64 ``(N,)``.

    ``n`` takes a seeded random subset of that many samples (the same for the same seed).
    """
    if split not in ("train", "test"):
        raise LandscapeError(f"split='{split}'; use train or test")
    info = dataset_info(name)
    if name == "digits":
        xtr, ytr, xte, yte = _digits()
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
    elif info.needs_data_dir:
        if data_dir is None:
            raise LandscapeError(f"{name} needs data_dir= pointing at the python-pickle folder (e.g. cifar-10-batches-py)")
        x, y = _cifar(name, str(Path(data_dir).resolve()), split)
    else:
        x, y = _synthetic(info, split)
    return _subset(x, y, n, seed)


def augment(x: torch.Tensor, *, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding, then a random horizontal flip, per sample (standard CIFAR augmentation)."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, chan, rows, cols.view(b, 1, 1, w)]
