"""Data: digits split and normalisation, seeded subsets, CIFAR pickle folders, synthetic, augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import write_cifar_folder

from landscape import LandscapeError, load_dataset
from landscape.core.data import augment, dataset_info


def test_digits_split_and_normalisation():
    xtr, ytr = load_dataset("digits")
    xte, yte = load_dataset("digits", split="test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert abs(float(xtr.mean())) < 1e-5 and abs(float(xtr.std()) - 1) < 1e-3
    assert set(ytr.tolist()) == set(range(10)) and set(yte.tolist()) == set(range(10))
    # no image is in both splits
    train_rows = {tuple(r) for r in xtr.flatten(1).numpy().round(4).tolist()}
    overlap = sum(tuple(r) in train_rows for r in xte.flatten(1).numpy().round(4).tolist())
    assert overlap <= 2  # sklearn's digits has a couple of exact duplicate images


def test_seeded_subsets_are_deterministic_and_distinct():
    a = load_dataset("digits", n=50, seed=3)
    b = load_dataset("digits", n=50, seed=3)
    c = load_dataset("digits", n=50, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    with pytest.raises(LandscapeError, match="has only 1437"):
        load_dataset("digits", n=5000)


def test_synthetic_shapes_and_learnability():
    x, y = load_dataset("synthetic-3x16x16", n=200)
    assert x.shape == (200, 3, 16, 16) and dataset_info("synthetic-3x16x16").in_channels == 3
    x, y = load_dataset("synthetic")
    assert x.shape[1:] == (1, 8, 8)
    # nearest class mean separates the classes well above chance: the data carries signal
    means = torch.stack([x[y == k].mean(0) for k in range(10)])
    pred = torch.cdist(x.flatten(1), means.flatten(1)).argmin(1)
    assert (pred == y).float().mean() > 0.5
    with pytest.raises(LandscapeError, match="unknown dataset"):
        load_dataset("mnist")


def test_cifar10_folder_in_python_layout(tiny_cifar_dir):
    x, y = load_dataset("cifar10", data_dir=str(tiny_cifar_dir))
    assert x.shape == (100, 3, 32, 32) and y.shape == (100,)
    xt, yt = load_dataset("cifar10", split="test", data_dir=str(tiny_cifar_dir.parent))  # parent folder works too
    assert xt.shape == (20, 3, 32, 32)
    # rows are R, G, B planes: check one pixel against the raw bytes and the standard normalisation
    with open(tiny_cifar_dir / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    r, g = raw[b"data"][0, 5 * 32 + 7], raw[b"data"][0, 1024 + 5 * 32 + 7]
    assert float(xt[0, 0, 5, 7]) == pytest.approx((r / 255 - 0.4914) / 0.2470, abs=1e-5)
    assert float(xt[0, 1, 5, 7]) == pytest.approx((g / 255 - 0.4822) / 0.2435, abs=1e-5)
    assert yt.tolist() == list(raw[b"labels"])


def test_cifar100_folder(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar-100-python", hundred=True)
    x, y = load_dataset("cifar100", data_dir=str(folder))
    assert x.shape == (20, 3, 32, 32) and int(y.max()) < 100
    assert dataset_info("cifar100").num_classes == 100


def test_cifar_errors_are_one_line(tmp_path, tiny_cifar_dir):
    with pytest.raises(LandscapeError, match="data_batch_1.*test_batch") as err:
        load_dataset("cifar10", data_dir=str(tmp_path / "empty"))
    assert "\n" not in str(err.value)
    with pytest.raises(LandscapeError, match="needs data_dir= pointing"):
        load_dataset("cifar10")
    (tiny_cifar_dir / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(LandscapeError, match="not a CIFAR"):
        load_dataset("cifar10", split="test", data_dir=str(tiny_cifar_dir))


@pytest.mark.parametrize(("labels", "fragment"), [
    (list(range(90, 110)), "20 'labels' outside 0..9 (first: 90)"),
    ([-1] + [0] * 19, "1 'labels' outside 0..9 (first: -1)"),
    (["cat"] * 20, "must be numbers"),
    ([0] * 19, "expected (N, 3072) and (N,)"),
    ([[0, 1]] * 20, "expected (N, 3072) and (N,)"),
])
def test_cifar_bad_labels_are_one_line_errors_naming_the_file(tmp_path, labels, fragment):
    folder = write_cifar_folder(tmp_path / "c")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((20, 3072), dtype=np.uint8), b"labels": labels}, f, protocol=2)
    with pytest.raises(LandscapeError) as err:
        load_dataset("cifar10", split="test", data_dir=str(folder))
    message = str(err.value)
    assert fragment in message and str(folder / "test_batch") in message and "\n" not in message


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch HOSTILE_RAN",))


def test_cifar_reader_never_runs_code(tmp_path, monkeypatch):
    folder = write_cifar_folder(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Hostile(), b"labels": []}, f)
    with pytest.raises(LandscapeError, match="forbidden"):
        load_dataset("cifar10", split="test", data_dir=str(folder))
    assert not (tmp_path / "HOSTILE_RAN").exists()


def test_augment_is_a_shifted_crop_or_its_mirror():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    out = augment(x, generator=torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        candidates = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[b], c) for c in candidates)
    again = augment(x, generator=torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)
    assert not np.array_equal(augment(x, generator=torch.Generator().manual_seed(1), padding=2).numpy(), out.numpy())
