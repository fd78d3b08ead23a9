"""Benchmark: top-10 Hessian eigenvalues, ours vs PyHessian 0.1, and Hutch++ vs Hutchinson (not a test).

resnet8 (width 16) trained briefly on digits; 1000 training samples as one batch; both libraries in this process
on the same model and data. Relative errors are against a tightly converged reference (SciPy ``eigsh``, tol 1e-12,
on our exact HVP operator). Usage: ``python benchmarks/hessian.py [--checkpoint CKPT] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

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
    ap.add_argument("--parts", default="eigen,trace", help="which comparisons to run: eigen, trace or both")
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
          f"{args.threads} threads, torch {torch.__version__}")

    if "eigen" in args.parts:
        compare_eigenvalues(model, x, y, args)
    if "trace" in args.parts:
        hpp = trace(model, (x, y), n_probes=args.probes, method="hutch++", seed=0)
        hut = trace(model, (x, y), n_probes=args.probes, method="hutchinson", seed=0)
        print(f"trace, {args.probes} HVPs each: hutch++ {hpp.estimate:.6g} ± {hpp.stderr:.3g}; "
              f"hutchinson {hut.estimate:.6g} ± {hut.stderr:.3g}; stderr ratio {hpp.stderr / hut.stderr:.3f} "
              f"(target <= 0.5)")


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

    ours = eigenvalues(model, (x, y), k=args.k, tol=args.tol, seed=0)
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
        print(f"time ratio pyhessian / landscape: {ratio:.2f}x (target >= 4); every error <= 1e-4: "
              f"{bool((err_ours <= 1e-4).all())}")
    else:
        print("pyhessian not installed: pip install landscape-toolkit[pyhessian]")



if __name__ == "__main__":
    main()
