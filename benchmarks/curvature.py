"""Benchmark: warm-started vs cold-started Lanczos for λmax along a training run (not a test).

A tanh MLP (``mlp``, 17,610 parameters) trained by full-batch gradient descent (MSE, η = 0.1, constant) on 1000
digits, a checkpoint every 10 steps, so the run crosses into the edge of stability where the top eigenvector keeps
turning. ``landscape.analyses.curvature.result.along_checkpoints`` then measures λmax of every checkpoint on the
1000 training samples at the same tolerance, once starting every Lanczos run from a seeded random vector (cold) and
once from the previous checkpoint's top eigenvector (warm; plus ``WARM_NOISE`` of a random vector). Reported: the
Hessian-vector products (HVPs) of each, their ratio, the time, and how far the two answers differ.
Usage: ``python benchmarks/curvature.py [--steps 600] [--every 10] [--tol 1e-3] [--threads 2] [--noise 0.1]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def run_folder(folder: str, *, steps: int, every: int, lr: float) -> list[str]:
    from landscape import load_dataset
    from landscape.training import seeded_model, train, trajectory

    model = seeded_model("mlp", num_classes=10, in_channels=1, seed=0)
    train(model, load_dataset("digits", n=1000, seed=0), None, epochs=steps, lr=lr, optimizer="gd", loss="mse",
          schedule="constant", seed=0, out_dir=folder, save_every=every, progress=False,
          meta={"dataset": "digits", "data_dir": None, "n_train": 1000})
    return [str(p) for p in trajectory(folder)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=600, help="gradient-descent steps")
    ap.add_argument("--every", type=int, default=10, help="a checkpoint (and a measurement) every K steps")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--tol", type=float, default=1e-3, help="Lanczos tolerance ‖Hv − λv‖ ≤ tol·|λ|")
    ap.add_argument("--noise", type=float, default=None, help="override WARM_NOISE (the random part of a warm start)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from landscape.analyses.curvature import measure
    from landscape.analyses.curvature.result import along_checkpoints

    if args.noise is not None:
        measure.WARM_NOISE = args.noise
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = run_folder(tmp, steps=args.steps, every=args.every, lr=args.lr)
        print(f"mlp on 1000 digits, GD η={args.lr} for {args.steps} steps ({time.perf_counter() - t0:.1f} s); "
              f"{len(files)} checkpoints; tol {args.tol}; warm noise {measure.WARM_NOISE}; {args.threads} threads, "
              f"torch {torch.__version__}")
        results = {}
        for name, warm in (("cold", False), ("warm", True)):
            t0 = time.perf_counter()
            r = along_checkpoints(files, n_samples=1000, tol=args.tol, warm_start=warm, seed=0)
            results[name] = (r, time.perf_counter() - t0)
    (cold, tc), (warm, tw) = results["cold"], results["warm"]
    hc, hw = cold.rows["lambda_matvecs"], warm.rows["lambda_matvecs"]
    print(f"{'':6}{'HVPs':>8}{'per ckpt':>10}{'seconds':>9}{'not conv.':>11}")
    for name, h, t, r in (("cold", hc, tc, cold), ("warm", hw, tw, warm)):
        print(f"{name:6}{h.sum():>8}{h.mean():>10.2f}{t:>9.2f}{int((r.rows['lambda_converged'] == 0).sum()):>11}")
    print(f"warm/cold HVPs: {hw.sum() / hc.sum():.3f}; after the first checkpoint: "
          f"{hw[1:].sum() / hc[1:].sum():.3f}")
    rel = np.abs(warm.lambda_max - cold.lambda_max) / np.abs(cold.lambda_max)
    print(f"|λ_warm − λ_cold| / λ_cold: median {np.median(rel):.2e}, max {rel.max():.2e} "
          f"(at step {int(cold.step[rel.argmax()])}); λmax {cold.lambda_max[0]:.3g} -> {cold.lambda_max[-1]:.3g}, "
          f"2/η = {cold.two_over_lr[-1]:.3g}")


if __name__ == "__main__":
    main()
