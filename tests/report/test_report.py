"""The report follows the stored values: numbers, intervals and verdicts change when a stored file changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from landscape.analyses.attention.schema import CORRELATION_KEYS, write_attention
from landscape.analyses.hessian.schema import write_hessian
from landscape.analyses.inputspace.schema import write_inputspace
from landscape.cli.report import report
from landscape.report import build_report, write_report
from landscape.report.claims import comparisons
from landscape.report.collect import model_config, read_study

MODELS = [("ResNet", "resnet8", []), ("FMMNet", "fmmnet8", []), ("SE", "se_resnet8", []),
          ("SE-add", "se_resnet8", ["attention_merge=add"])]


def make_study(folder: Path, acc: dict[str, list[float]], *, trace: dict[str, list[float]] | None = None,
               noise: dict[str, list[float]] | None = None, rho: dict[str, list[float]] | None = None) -> Path:
    """A study folder as the runner leaves it (manifest, run folders, metrics.csv, result files), with the given
    stored values: acc[label][i] is seed i's final test accuracy."""
    seeds = list(range(len(next(iter(acc.values())))))
    analyses = [{"name": "hessian", "command": "hessian", "options": {}},
                {"name": "noise", "command": "inputspace", "options": {}},
                {"name": "attention", "command": "attention", "options": {}}]
    manifest = {"seeds": seeds, "analyses": analyses, "models": []}
    for label, model, options in MODELS:
        manifest["models"].append({"label": label, "model": model, "model_options": options,
                                   "runs": {str(s): f"{label}/seed-{s}" for s in seeds}})
        for s in seeds:
            run = folder / label / f"seed-{s}"
            (run / "results").mkdir(parents=True)
            (run / "final.pt").write_bytes(b"")
            (run / "metrics.csv").write_text("epoch,step,lr,train_loss,train_acc,test_loss,test_acc,seconds\n"
                                             f"1,4,0.1,1.0,0.5,2.0,0.3,1.0\n2,8,0.1,0.5,0.8,0.7,{acc[label][s]},2.0\n")
            if trace:
                write_hessian(run / "results" / "hessian.h5", attrs={"which": "LA"}, eigenvalues=np.array([5.0]),
                              trace=trace[label][s], trace_stderr=0.1)
            if noise:
                sigma = np.array([0.0, 0.5, 1.0])
                a0 = acc[label][s]
                write_inputspace(run / "results" / "noise.h5", mode="noise", attrs={},
                                 arrays={"sigma": sigma, "loss": np.zeros((1, 3)),
                                         "acc": np.array([[a0, a0 * noise[label][s], a0 * noise[label][s]]])})
            if rho and label in rho:
                pooled = {k: 0.0 for k in CORRELATION_KEYS}
                pooled["spearman"] = rho[label][s]
                write_attention(run / "results" / "attention.h5", attrs={"importance": "ablation", **pooled},
                                modules=[{"name": "layer1.0.se", "kind": "se", "mean_weight": [0.1, 0.2],
                                          "importance": [0.3, 0.1], **pooled}])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


ACC = {"ResNet": [0.90, 0.92, 0.91], "FMMNet": [0.93, 0.945, 0.935], "SE": [0.95, 0.96, 0.955],
       "SE-add": [0.90, 0.905, 0.90]}


def claim(data: dict, cid: str) -> dict:
    return next(c for c in data["claims"] if c["id"] == cid)


def test_numbers_are_the_stored_values_and_scipy_statistics(tmp_path):
    data = build_report(make_study(tmp_path, ACC))
    s = data["metrics"]["accuracy"]["by_model"]["FMMNet"]
    v = ACC["FMMNet"]
    assert s["values"] == {"0": 0.93, "1": 0.945, "2": 0.935}
    assert s["mean"] == pytest.approx(np.mean(v)) and s["std"] == pytest.approx(np.std(v, ddof=1))
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(v), scale=stats.sem(v))
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    e = claim(data, "4a")["evidence"][0]
    ref = stats.ttest_rel(ACC["FMMNet"], ACC["ResNet"])
    assert (e["treatment"], e["control"], e["n"]) == ("FMMNet", "ResNet", 3)
    assert e["t"] == pytest.approx(ref.statistic) and e["p"] == pytest.approx(ref.pvalue)


def test_verdicts_follow_the_stored_values(tmp_path):
    data = build_report(make_study(tmp_path / "a", ACC))
    assert claim(data, "4a")["verdict"] == "supported"  # FMMNet +2.6 points, tight: non-inferior
    assert claim(data, "2")["verdict"] == "supported"  # SE × beats SE + by 5.3 points
    # FMMNet now 5 points worse than ResNet on every seed: clearly inferior beyond the 1-point margin.
    worse = {**ACC, "FMMNet": [0.85, 0.87, 0.86]}
    data = build_report(make_study(tmp_path / "b", worse))
    assert claim(data, "4a")["verdict"] == "not supported"
    # Equal accuracies within ±1 point: × does not make attention work better.
    same = {**ACC, "SE-add": [0.951, 0.959, 0.956]}
    assert claim(build_report(make_study(tmp_path / "c", same)), "2")["verdict"] == "not supported"
    # A noisy difference whose interval straddles the margin: inconclusive.
    noisy = {**ACC, "FMMNet": [0.80, 0.99, 0.91]}
    assert claim(build_report(make_study(tmp_path / "d", noisy)), "4a")["verdict"] == "inconclusive"
    # Two seeds: inconclusive by rule, whatever the numbers.
    two = {k: v[:2] for k, v in ACC.items()}
    c = claim(build_report(make_study(tmp_path / "e", two)), "4a")
    assert c["verdict"] == "inconclusive" and "2 paired seed(s) < 3" in c["evidence"][0]["reason"]


def test_editing_a_stored_value_changes_the_report(tmp_path):
    import h5py

    folder = make_study(tmp_path, ACC, trace={k: [10.0, 11.0, 12.0] for k in ACC})
    write_report(folder)
    before = json.loads((folder / "report.json").read_text())
    assert before["metrics"]["hessian.trace"]["by_model"]["FMMNet"]["mean"] == pytest.approx(11.0)
    with h5py.File(folder / "FMMNet" / "seed-1" / "results" / "hessian.h5", "r+") as f:
        f["trace"][()] = 41.0
    result = CliRunner().invoke(report, [str(folder)])
    assert result.exit_code == 0, result.output
    after = json.loads((folder / "report.json").read_text())
    assert after["metrics"]["hessian.trace"]["by_model"]["FMMNet"]["mean"] == pytest.approx(21.0)
    assert "| FMMNet | 3 | 21 |" in (folder / "report.md").read_text()
    # The trace is not invariant to rescaling: it is shown in claim 3 but never decides it.
    c3 = claim(after, "3")
    assert c3["evidence"] and not any(e["decides"] for e in c3["evidence"])
    assert c3["verdict"] == "inconclusive" and c3["summary"].startswith("no data")
    assert "| hessian.trace | no | not invariant" in (folder / "report.md").read_text()


def test_noise_robustness_and_attention_correlation(tmp_path):
    retained = {"ResNet": [0.5, 0.55, 0.52], "FMMNet": [0.7, 0.72, 0.75], "SE": [0.8, 0.82, 0.81],
                "SE-add": [0.6, 0.62, 0.6]}
    rho = {"SE": [0.1, 0.2, 0.15], "SE-add": [0.05, -0.1, 0.0]}
    data = build_report(make_study(tmp_path / "a", ACC, noise=retained, rho=rho))
    c4b = claim(data, "4b")
    assert {e["factor"] for e in c4b["evidence"]} == {"residual merge (× vs +)", "attention merge (× vs +)",
                                                      "attention (se) vs none"}
    assert c4b["verdict"] == "supported"
    assert claim(data, "1")["verdict"] == "supported"
    strong = {"SE": [0.8, 0.85, 0.9], "SE-add": [0.7, 0.75, 0.8]}
    assert claim(build_report(make_study(tmp_path / "b", ACC, rho=strong)), "1")["verdict"] == "not supported"


def test_pairs_differ_in_one_factor_only():
    assert model_config("se_fmmnet20", []) == {"depth": 20, "merge": "mul", "attention": "se",
                                               "attention_merge": "mul"}
    assert model_config("resnet8_noshort", [])["merge"] == "none"
    assert model_config("resnet8", ["merge=mul"])["merge"] == "mul"

    class M:
        def __init__(self, label, model, options=()):
            self.label, self.config = label, model_config(model, list(options))

    pairs = comparisons([M("r20", "resnet20"), M("f20", "fmmnet20"), M("f56", "fmmnet56"), M("r8g", "resnet8",
                                                                                               ["merge=gate"])])
    assert [(p.treatment, p.control) for p in pairs] == [("f20", "r20")]


def test_a_folder_without_a_study_is_one_line(tmp_path):
    result = CliRunner().invoke(report, [str(tmp_path)])
    assert result.exit_code == 1 and "holds no study" in str(result.exception)


def test_old_study_folders_without_manifest_are_read(tmp_path):
    make_study(tmp_path, ACC)
    (tmp_path / "manifest.json").unlink()
    study = read_study(tmp_path)
    assert [m.label for m in study.models] == sorted(ACC)
    assert study.values["accuracy"]["FMMNet"] == {0: 0.93, 1: 0.945, 2: 0.935}
