"""Benchmark: top-10 Hessian eigenvalues, ours vs PyHessian 0.1; Hutch++ vs Hutchinson; the two Hessian-vector
products; peak memory of ResNet-18 (not a test).

resnet8 (width 16) trained briefly on digits; 1000 training samples as one batch; both libraries in this process
on the same model and data. Relative errors are against a tightly converged reference (SciPy ``eigsh``, tol 1e-12,
on our exact HVP operator). ``hvp``: double backprop (graph cached, and rebuilt every product) against
forward-over-reverse, side by side, ``--repeats`` rounds of 10 products each (median and min–max per product), on one
batch and on 8 batches of 125. ``memory``: peak RSS of ``landscape hessian --top-k 5 --trace --density`` (default
probes and steps) on an untrained ResNet-18 and 16 CIFAR-shaped images, in a child process.
Usage: ``python benchmarks/hessian.py [--checkpoint CKPT] [--threads 2] [--parts eigen,trace,hvp,memory]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def trained_checkpoint(folder: str) -> str:
    from landscape import load_dataset
    from landscape.training import seeded_model, train

    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0)
    train(model, load_dataset("digits"), load_dataset("digits", split="test"), epochs=15, batch_size=64, lr=0.05,
          seed=0, out_dir=folder, progress=False, meta={"dataset": "digits", "data_dir": None})
    return f"{folder}/final.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=None, help="a resnet8 digits checkpoint (default: train one, ~1 min)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tol", type=float, default=1e-3, help="our Lanczos tolerance on ‖Hv − λv‖ / |λ|")
    ap.add_argument("--probes", type=int, default=99, help="HVPs per trace estimate")
    ap.add_argument("--parts", default="eigen,trace,hvp",
                    help="comma-separated: eigen, trace, hvp, memory (memory: ResNet-18, several minutes)")
    ap.add_argument("--memory-default-only", action="store_true",
                    help="--parts memory: only the default settings (each run takes ~40 min on 2 CPU cores)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds per HVP variant (--parts hvp)")
    ap.add_argument("--ncv", type=int, default=None, help="our Lanczos basis size (default max(2k + 1, 20))")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.hessian.compute import trace

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or trained_checkpoint(tmp)
        model, meta = load_checkpoint(ckpt)
    x, y = load_dataset("digits", n=1000, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {meta.get('model')} ({n_params} parameters), 1000 digits samples as one batch, "
          f"{args.threads} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")

    if "eigen" in args.parts:
        compare_eigenvalues(model, x, y, args)
    if "trace" in args.parts:
        hpp = trace(model, (x, y), n_probes=args.probes, method="hutch++", seed=0)
        hut = trace(model, (x, y), n_probes=args.probes, method="hutchinson", seed=0)
        print(f"trace, {args.probes} HVPs each: hutch++ {hpp.estimate:.6g} ± {hpp.stderr:.3g}; "
              f"hutchinson {hut.estimate:.6g} ± {hut.stderr:.3g}; stderr ratio {hpp.stderr / hut.stderr:.3f} "
              f"(target <= 0.5)")
    if "hvp" in args.parts:
        compare_hvps(model, x, y, repeats=args.repeats)
    if "memory" in args.parts:
        resnet18_memory(args.threads, only_default=args.memory_default_only)


def compare_hvps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, repeats: int) -> None:
    """Seconds per HVP of each product, interleaved round by round so load changes hit all of them alike."""
    from landscape.analyses.hessian.operator import HessianOperator

    eight = [(x[i:i + 125], y[i:i + 125]) for i in range(0, len(x), 125)]
    cases = {"one batch: reverse, graph cached (default)": ((x, y), {"hvp": "reverse"}),
             "one batch: reverse, graph rebuilt": ((x, y), {"hvp": "reverse", "keep_graph": False}),
             "one batch: forward-over-reverse": ((x, y), {"hvp": "forward"}),
             "8 batches: reverse (default, rebuilt per batch)": (eight, {"hvp": "reverse"}),
             "8 batches: forward-over-reverse": (eight, {"hvp": "forward"})}
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in cases}
    diffs: dict[str, float] = {}
    ref = None
    for _ in range(repeats):
        for name, (data, options) in cases.items():
            with HessianOperator(model, data, **options) as op:  # type: ignore[arg-type]
                out = op.matvec(v)  # builds the cached graph where there is one; not timed
                ref = out if ref is None else ref
                diffs[name] = max(diffs.get(name, 0.0), float((out - ref).norm() / ref.norm()))
                t0 = time.perf_counter()
                for _ in range(10):
                    op.matvec(v)
                times[name].append((time.perf_counter() - t0) / 10)
    print(f"HVP seconds per product ({repeats} rounds of 10; median [min, max]; ‖Hv − Hv_default‖ / ‖Hv_default‖):")
    for name, ts in times.items():
        print(f"  {name:50s} {np.median(ts):.4f} [{min(ts):.4f}, {max(ts):.4f}]  {diffs[name]:.1e}")


def resnet18_memory(threads: int, *, only_default: bool = False) -> None:
    """Peak RSS of the command on ResNet-18 (CIFAR-10 shape) in a child process, in MiB and parameter vectors."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_cifar_folder

    from landscape.core.checkpoint import save_checkpoint
    from landscape.training import seeded_model

    with tempfile.TemporaryDirectory() as tmp:
        data = write_cifar_folder(Path(tmp) / "cifar-10-batches-py", n_per_file=16)
        model = seeded_model("resnet18", num_classes=10, in_channels=3, seed=0)
        n_params = sum(p.numel() for p in model.parameters())
        ckpt = save_checkpoint(Path(tmp) / "r18.pt", model, {"dataset": "cifar10", "data_dir": str(data)})
        del model
        for extra in ([], ["--no-reorthogonalize"])[:1 if only_default else 2]:
            cmd = [sys.executable, "-m", "landscape", "--threads", str(threads), "hessian", str(ckpt), "--top-k", "5",
                   "--trace", "--density", *extra, "--n-samples", "16", "--quiet", "--overwrite",
                   "--out", str(Path(tmp) / "r18.h5")]
            # A fresh parent per variant: RUSAGE_CHILDREN's ru_maxrss is the largest child a process has waited for.
            probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True);"
                     " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
            peak = int(out.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux
            shown = " ".join(["landscape", *cmd[5:cmd.index("--out")]])
            print(f"ResNet-18 ({n_params:,} parameters, 16 CIFAR-shaped images): `{shown}`: "
                  f"peak RSS {peak / 2**20:,.0f} MiB = {peak / (4 * n_params):.1f} float32 parameter vectors, "
                  f"{time.perf_counter() - t0:.0f} s")


def compare_eigenvalues(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> None:
    from scipy.sparse.linalg import LinearOperator, eigsh

    from landscape.analyses.hessian.compute import eigenvalues
    from landscape.analyses.hessian.operator import HessianOperator
    from landscape.analyses.hessian.pyhessian import available, pyhessian_measure

    with HessianOperator(model, (x, y)) as op:
        lin = LinearOperator((op.size, op.size), dtype=np.float64,
                             matvec=lambda v: op.matvec(torch.from_numpy(np.ascontiguousarray(v).ravel())).numpy())
        t0 = time.perf_counter()
        ref = np.sort(eigsh(lin, k=args.k, which="LA", tol=1e-12, ncv=4 * args.k,
                            v0=np.ones(op.size))[0])[::-1]
        print(f"reference (eigsh tol=1e-12): {op.n_hvp} HVPs, {time.perf_counter() - t0:.1f} s")
    print("reference eigenvalues:", " ".join(f"{v:.6g}" for v in ref))

    ours = eigenvalues(model, (x, y), k=args.k, tol=args.tol, seed=0, ncv=args.ncv)
    err_ours = np.abs(ours.eigenvalues - ref) / np.abs(ref)
    print(f"landscape: {ours.n_hvp} HVPs, {ours.seconds:.2f} s, max rel. error {err_ours.max():.2e}")
    print("  rel. errors:", " ".join(f"{e:.1e}" for e in err_ours))
    if available():
        theirs = pyhessian_measure(model, (x, y), k=args.k, seed=0)
        vals = np.sort(theirs["eigenvalues"])[::-1]
        err_theirs = np.abs(vals - ref) / np.abs(ref)
        print(f"pyhessian: {theirs['n_hvp']} HVPs, {theirs['seconds_eigenvalues']:.2f} s, max rel. error {err_theirs.max():.2e}")
        print("  rel. errors:", " ".join(f"{e:.1e}" for e in err_theirs))
        ratio = theirs["seconds_eigenvalues"] / ours.seconds
        print(f"time ratio pyhessian / landscape: {ratio:.2f}x, HVP ratio {theirs['n_hvp'] / ours.n_hvp:.2f}x "
              f"(target >= 8); every error of ours <= 1e-4: "
              f"{bool((err_ours <= 1e-4).all())}")
    else:
        print("pyhessian not installed: pip install landscape-toolkit[pyhessian]")


if __name__ == "__main__":
    main()
