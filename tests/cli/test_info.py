"""``landscape info`` on Hessian, predictiveness, input-space and attention files made by the real commands: the
printed headline numbers equal the values read from the file with h5py alone."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from landscape import save_checkpoint
from landscape.cli import main
from landscape.training import seeded_model

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf", re.IGNORECASE)


def run(*args) -> str:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def info(path: Path) -> list[str]:
    return run("info", path).splitlines()


def row(lines: list[str], label: str) -> str:
    """The text after the label of the one line whose label is ``label``."""
    found = [ln for ln in lines if ln.strip().startswith(label) and ln.strip()[len(label):][:1] in (" ", "")]
    assert len(found) == 1, (label, lines)
    return found[0].strip()[len(label):]


def numbers(text: str) -> list[float]:
    return [float(t) for t in _NUMBER.findall(text)]


def close(printed: float, value: float, digits: int = 6) -> bool:
    """``printed`` is ``value`` written with ``digits`` significant digits."""
    return float(f"{value:.{digits}g}") == printed


def assert_close(printed: list[float], values: list[float], digits: int | list[int] = 6) -> None:
    """Each printed number is its value, written with ``digits`` (one for all, or one per number)."""
    assert len(printed) == len(values), (printed, values)
    each = digits if isinstance(digits, list) else [digits] * len(values)
    assert all(close(p, float(v), d) for p, v, d in zip(printed, values, each)), (printed, list(values))


def settings_first(lines: list[str], path: Path, headline: str) -> None:
    """Provenance lines come right after the title line and before the headline numbers, with the stored values."""
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
    assert lines[0].startswith(f"{path}: ")
    labels = [ln.split()[0] for ln in lines[1:]]
    assert labels[0] == "model" and row(lines, "model").strip() == attrs["model"]
    first_headline = next(i for i, ln in enumerate(lines) if ln.strip().startswith(headline))
    for key in ("checkpoint", "dataset", "seed"):
        where = labels.index(key) + 1
        assert where < first_headline and lines[where].split(maxsplit=1)[1] == str(attrs[key]), key


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("info_ckpt")
    out = {}
    for name in ("resnet8", "se_resnet8"):
        out[name] = folder / f"{name}.pt"
        save_checkpoint(out[name], seeded_model(name, num_classes=10, in_channels=1, seed=0, width=0.5),
                        {"dataset": "digits"})
    return out


def test_hessian_info_shows_eigenvalues_trace_density_and_layers(ckpts, tmp_path):
    path = tmp_path / "h.h5"
    run("hessian", ckpts["resnet8"], "--top-k", 2, "--trace", "--probes", 8, "--density", "--lanczos-steps", 10,
        "--per-layer", "--layer-depth", 1, "--n-samples", 32, "--device", "cpu", "--quiet", "--out", path)
    lines = info(path)
    settings_first(lines, path, "eigenvalue 1")
    with h5py.File(path) as f:
        ev, res = f["eigenvalues"][()], f["residuals"][()]
        trace, stderr = f["trace"][()], f["trace_stderr"][()]
        nodes, weights = f["density/nodes"][()], f["density/weights"][()]
        values, grid = f["density/values"][()], f["density/grid"][()]
        layers = {name: {k: g[k][()] for k in g} for name, g in f["per_layer"].items()}
        assert row(lines, "n_samples").strip() == str(f.attrs["n_samples"]) == "32"
    for i in range(2):
        assert_close(numbers(row(lines, f"eigenvalue {i + 1} (LA)")), [ev[i], res[i]], [8, 3])
    assert numbers(row(lines, "eigenvalue 1 (LA)"))[0] != numbers(row(lines, "eigenvalue 2 (LA)"))[0]
    tr = numbers(row(lines, "trace"))
    assert close(tr[0], trace, 8) and close(tr[1], stderr, 3)
    assert_close(numbers(row(lines, "density support"))[:2], [nodes.min(), nodes.max()], 8)
    mass = numbers(row(lines, "density mass"))  # negative, near zero, (the 0.01 of the bound), ∫
    top = np.abs(nodes).max()
    assert_close([mass[0], mass[1], mass[3]], [weights[nodes < 0].sum() / weights.sum(),
                                                weights[np.abs(nodes) <= 0.01 * top].sum() / weights.sum(),
                                                np.trapezoid(values, grid)])
    assert 0 < mass[0] < 1  # a random network's Hessian has eigenvalues of both signs: the test can tell
    assert set(layers) == {"conv1", "bn1", "stages", "fc"}
    for name, layer in layers.items():
        printed = numbers(row(lines, name))
        assert_close(printed[:2], [layer["eigenvalues"][0], layer["trace"]], 8)
        assert close(printed[2], layer["trace_stderr"], 3)


def _check_predictiveness(lines: list[str], path: Path) -> None:
    with h5py.File(path) as f:
        beta, eta, loss = f["beta"][()], f["eta"][()], f["loss"][()]
        grad_diff, train_loss, step = f["grad_diff"][()], f["train_loss"][()], f["step"][()]
        sizes = f.attrs.get("batch_sizes")
        axis = f.attrs["x_axis"]
    assert len(beta) >= 2 and len(set(beta)) == len(beta)  # final, median and max differ
    assert numbers(row(lines, "probes")) == [len(step), step[0], step[-1]] and axis in row(lines, "probes")
    printed = numbers(row(lines, "β (effective smoothness)"))
    expected = [beta[-1], np.median(beta), beta.max()]
    if sizes is not None:
        expected.append(np.average(beta, weights=sizes))
    assert_close(printed, expected)
    change = loss - train_loss[:, None]
    for e, value in enumerate(eta):
        assert_close(numbers(row(lines, f"η={value:g}")),
                     [change[:, e].min(), change[:, e].max(), grad_diff[:, e].min(), grad_diff[:, e].max()])


def test_predictiveness_info_checkpoint_kind(ckpts, tmp_path):
    path = tmp_path / "p.h5"
    run("predictiveness", ckpts["resnet8"], "--batches", 3, "--batch-size", 16, "--eta", "0.1:0.3:3",
        "--device", "cpu", "--quiet", "--out", path)
    lines = info(path)
    settings_first(lines, path, "probes")
    assert row(lines, "source").strip() == "checkpoint" and row(lines, "split").strip() == "train"
    _check_predictiveness(lines, path)


def test_predictiveness_info_training_kind(tmp_path):
    folder = tmp_path / "run"
    run("train", "resnet8", "--n-train", 64, "--epochs", 1, "--batch-size", 16, "--width", 0.5, "--probe-every", 1,
        "--probe-eta", "0.05,0.2", "--device", "cpu", "--quiet", "--out", folder)
    path = folder / "predictiveness.h5"
    lines = info(path)
    assert lines[1].split() == ["model", "resnet8"]
    assert row(lines, "source").strip() == "training" and row(lines, "every").strip() == "1"
    assert lines.index(next(ln for ln in lines if "every" in ln)) < lines.index(
        next(ln for ln in lines if "β (effective" in ln))
    _check_predictiveness(lines, path)


def _inputspace(ckpt: Path, path: Path, *args) -> list[str]:
    run("inputspace", ckpt, *args, "--device", "cpu", "--quiet", "--out", path)
    lines = info(path)
    settings_first(lines, path, "radius grid" if "between" not in args and "noise" not in args else
                   ("α grid" if "between" in args else "noise robustness"))
    return lines


def _check_stats(lines: list[str], path: Path, stats: tuple[str, ...], what: str) -> None:
    with h5py.File(path) as f:
        arrays = {k: f[k][()] for k in (*stats, "jacobian_norm")}
    for stat in stats:
        v = arrays[stat].ravel()
        assert_close(numbers(row(lines, stat)), [v.mean(), v.max(), v.size])
        assert what in row(lines, stat)
    jac = arrays["jacobian_norm"].ravel()
    assert_close(numbers(row(lines, "jacobian_norm"))[-3:], [jac.mean(), jac.max(), jac.size])


def test_inputspace_info_around(ckpts, tmp_path):
    path = tmp_path / "around.h5"
    lines = _inputspace(ckpts["resnet8"], path, "--samples", 6, "--radius", "0:2:5", "--n-directions", 2)
    assert numbers(row(lines, "radius grid")) == [0, 2, 5]
    _check_stats(lines, path, ("total_variation", "max_second_diff", "lipschitz", "flips"), "curves")
    assert numbers(row(lines, "total_variation"))[-1] == 12  # 6 samples × 2 directions


def test_inputspace_info_between(ckpts, tmp_path):
    path = tmp_path / "between.h5"
    lines = _inputspace(ckpts["resnet8"], path, "--mode", "between", "--pairs", 6, "--samples", 12)
    with h5py.File(path) as f:
        same = f["same_class"][()]
    assert numbers(row(lines, "pairs")) == [6, same.sum()]
    _check_stats(lines, path, ("total_variation", "max_second_diff", "lipschitz", "flips", "chord_deviation"),
                 "pairs")


def test_inputspace_info_noise(ckpts, tmp_path):
    path = tmp_path / "noise.h5"
    lines = _inputspace(ckpts["resnet8"], path, "--mode", "noise", "--sigma", "0:3:4", "--draws", 2,
                        "--samples", 30)
    with h5py.File(path) as f:
        sigma, acc, loss = f["sigma"][()], f["acc"][()], f["loss"][()]
        assert "jacobian_norm" not in f
    assert not any("jacobian" in ln for ln in lines)
    for k, s in enumerate(sigma):
        assert_close(numbers(row(lines, f"σ={s:g}")), [acc[:, k].mean(), acc[:, k].min(), loss[:, k].mean()])


def test_attention_info_shows_correlations(ckpts, tmp_path):
    path = tmp_path / "att.h5"
    run("attention", ckpts["se_resnet8"], "--samples", 24, "--device", "cpu", "--quiet", "--out", path)
    lines = info(path)
    settings_first(lines, path, "per module")
    with h5py.File(path) as f:
        root = dict(f.attrs)
        modules = [(dict(g.attrs), g["importance"].shape[0]) for _, g in sorted(f["modules"].items())]
    assert len(modules) == 3
    keys = ("spearman", "spearman_p", "kendall", "kendall_p")

    def check(printed: list[float], values: dict, prefix: str = "") -> None:
        assert len(printed) == 4, printed
        for p, key, digits in zip(printed, keys, (6, 3, 6, 3)):
            assert close(p, values[prefix + key], digits), (key, p, values[prefix + key])

    for attrs, channels in modules:
        text = row(lines, attrs["name"])
        assert text.endswith(f"({attrs['kind']}, {channels} channels)")
        check(numbers(text.rsplit("(", 1)[0]), attrs)
    check(numbers(row(lines, "pooled")), root)
    check(numbers(row(lines, "pooled_within (module ranks)")), root, "within_")
    # The pooled values are headline numbers, not repeated among the settings.
    assert not any(ln.split()[0] in keys for ln in lines[1:] if ln.strip())


def test_partial_and_foreign_files(tmp_path):
    from landscape.analyses.hessian.schema import write_hessian
    from landscape.analyses.predictiveness.schema import create

    empty = tmp_path / "empty.h5"
    create(empty, eta=[0.1, 0.2], attrs={"model": "m", "source": "training"})
    assert "none yet" in row(info(empty), "probes")
    bare = tmp_path / "bare.h5"  # eigenvalues only: no residuals, trace or density
    write_hessian(bare, attrs={"model": "m"}, eigenvalues=np.array([3.0, 1.0]), residuals=None)
    lines = info(bare)
    assert numbers(row(lines, "eigenvalue 2 (LA)"))[0] == 1.0 and not any("trace" in ln for ln in lines)
    future = tmp_path / "future.h5"  # a version this release cannot read: attributes and shapes only
    with h5py.File(future, "w") as f:
        f.attrs["schema"] = "landscape.hessian/2"
        f.attrs["model"] = "m"
        f["eigenvalues"] = np.arange(3.0)
    lines = info(future)
    assert row(lines, "model").strip() == "m" and "(3,)" in row(lines, "/eigenvalues")
    assert not any("eigenvalue 1" in ln for ln in lines)
