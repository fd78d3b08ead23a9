"""Shared fixtures: tiny trained checkpoints on digits, a tiny CIFAR folder, thread settings."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

# One thread: the models are tiny, and OpenMP spinning makes parallel test processes crawl on 2 cores.
torch.set_num_threads(int(os.environ.get("LANDSCAPE_TEST_THREADS", "1")))
os.environ.setdefault("MPLBACKEND", "Agg")


def _train_run(tmp_path_factory: pytest.TempPathFactory, name: str, epochs: int, **options) -> Path:
    from landscape import load_dataset
    from landscape.core.data import dataset_info
    from landscape.training import seeded_model, train

    info = dataset_info("digits")
    out = tmp_path_factory.mktemp(f"run_{name}")
    model = seeded_model(name, num_classes=info.num_classes, in_channels=info.in_channels, seed=0, **options)
    train(model, load_dataset("digits"), load_dataset("digits", split="test"), epochs=epochs, batch_size=64,
          lr=0.05, seed=0, out_dir=out, progress=False, meta={"dataset": "digits", "data_dir": None})
    return out


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8 training run on digits (10 epochs, a checkpoint every epoch)."""
    return _train_run(tmp_path_factory, "resnet8", 10)


@pytest.fixture(scope="session")
def digits_ckpt(digits_run: Path) -> Path:
    """A trained resnet8 checkpoint on digits."""
    return digits_run / "final.pt"


@pytest.fixture(scope="session")
def digits_fmm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_run(tmp_path_factory, "fmmnet8", 10)


@pytest.fixture(scope="session")
def digits_fmm_ckpt(digits_fmm_run: Path) -> Path:
    """A trained fmmnet8 checkpoint on digits."""
    return digits_fmm_run / "final.pt"


@pytest.fixture(scope="session")
def se_digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained se_resnet8 checkpoint on digits (has attention modules)."""
    return _train_run(tmp_path_factory, "se_resnet8", 5) / "final.pt"


def write_cifar_folder(folder: Path, *, n_per_file: int = 20, hundred: bool = False, seed: int = 0) -> Path:
    """A tiny CIFAR folder in the real python-pickle layout (byte-string keys, uint8 rows R|G|B)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    label_key, classes = (b"fine_labels", 100) if hundred else (b"labels", 10)
    for name in files:
        batch = {b"data": rng.integers(0, 256, size=(n_per_file, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, classes, size=n_per_file).tolist(),
                 b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


@pytest.fixture
def tiny_cifar_dir(tmp_path: Path) -> Path:
    """A CIFAR-10 folder with 5×20 train and 20 test images in the python-pickle layout."""
    return write_cifar_folder(tmp_path / "cifar-10-batches-py")


@pytest.fixture
def check_bad_figure_outputs(tmp_path: Path):
    """Check that ``plot`` and ``compare`` on ``files`` refuse bad ``--out`` paths in one line, leaving nothing."""
    from click.testing import CliRunner

    from landscape.cli import main

    def check(files: list[Path]) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        for out, fragment in ((tmp_path / "x.foo", "not a figure format"), (tmp_path / "noext", "no extension"),
                              (blocker / "x.png", "cannot create output folder")):
            for args in (["plot", files[0]], ["compare", files[0], files[-1]]):
                res = CliRunner().invoke(main, [str(a) for a in (*args, "--out", out)])
                assert res.exit_code == 1, res.output
                assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
                assert fragment in res.output, res.output
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".x", "x", ".noext"))) == []

    return check


# tests/slow holds the long reliability trials (many seeded kills, the 0–300 ms concurrency sweep, write-limit
# sweeps, the bad-input table through fresh interpreters): skipped unless asked for.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests/slow (long reliability trials); LANDSCAPE_SLOW=1 does the same")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("LANDSCAPE_SLOW") == "1":
        return
    slow_dir = Path(__file__).resolve().parent / "slow"
    skip = pytest.mark.skip(reason="long reliability trial: run with --run-slow or LANDSCAPE_SLOW=1")
    for item in items:
        if slow_dir in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
