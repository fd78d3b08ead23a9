"""Benchmark: top-10 Hessian eigenvalues and the trace of ResNet-56 on 10 000 CIFAR-shaped images, landscape against
PyHessian 0.1 on the same device, in this process (not a test).

The model is the registered ``resnet56`` (untrained, seed 0: the timings do not depend on the weights); the images
are seeded Gaussian 3×32×32 with random labels, in batches of ``--batch-size``; both libraries get the same model and
batches. Eigenvalues: our thick-restart Lanczos (stopping at ``‖Hv − λv‖ ≤ tol·|λ|``) against PyHessian's deflated
power iteration (its ``tol`` on the eigenvalue change); trace: Hutch++ against PyHessian's Hutchinson, both with
``--probes`` HVPs at most. With ``--reference`` a tight Lanczos run (tol 1e-8) gives the errors of both.

GPU (one command): ``python benchmarks/gpu_hessian.py`` (needs ``pip install landscape-toolkit[pyhessian]``).
CPU at reduced size: ``python benchmarks/gpu_hessian.py --small`` (resnet20 at width 0.5, 512 images).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="CPU-sized run: resnet20 ×0.5, 512 images, batches of 128")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default=None, help="registered model (default resnet56; resnet20 with --small)")
    ap.add_argument("--width", type=float, default=None)
    ap.add_argument("--n", type=int, default=None, help="images (default 10 000; 512 with --small)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 1000; 128 with --small")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tol", type=float, default=1e-3, help="both libraries' tolerance")
    ap.add_argument("--max-iter", type=int, default=100, help="PyHessian's iterations per eigenvalue")
    ap.add_argument("--probes", type=int, default=60, help="trace HVPs (both)")
    ap.add_argument("--hvp", choices=["reverse", "forward"], default="reverse")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                    help="tight reference eigenvalues (default: on with --small)")
    ap.add_argument("--skip-pyhessian", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_name = args.model or ("resnet20" if args.small else "resnet56")
    width = args.width if args.width is not None else (0.5 if args.small else 1.0)
    n = args.n or (512 if args.small else 10_000)
    batch_size = args.batch_size or (128 if args.small else 1000)
    reference = args.small if args.reference is None else args.reference
    device = torch.device(args.device)

    from landscape.analyses.hessian.compute import eigenvalues, trace
    from landscape.analyses.hessian.pyhessian import available, pyhessian_measure
    from landscape.training import seeded_model

    model = seeded_model(model_name, num_classes=10, in_channels=3, seed=0, width=width).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{model_name} ×{width:g} ({sum(p.numel() for p in model.parameters()):,} parameters), {n} CIFAR-shaped "
          f"images in {len(batches)} batches, {name}, torch {torch.__version__}, "
          f"cudnn TF32 {torch.backends.cudnn.allow_tf32}, load average {os.getloadavg()[0]:.1f}")

    _sync(device)
    t0 = time.perf_counter()
    ours = eigenvalues(model, batches, k=args.k, tol=args.tol, seed=0, hvp=args.hvp)
    _sync(device)
    t_eig = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = trace(model, batches, n_probes=args.probes, seed=0, hvp=args.hvp)
    _sync(device)
    t_tr = time.perf_counter() - t0
    print(f"landscape: top-{args.k} {t_eig:.1f} s ({ours.n_hvp} HVPs, converged {int(ours.converged.sum())}/{args.k});"
          f" trace {tr.estimate:.6g} ± {tr.stderr:.2g} in {t_tr:.1f} s ({tr.n_hvp} HVPs, hutch++)")
    print("  eigenvalues:", " ".join(f"{v:.6g}" for v in ours.eigenvalues))

    ref = None
    if reference:
        t0 = time.perf_counter()
        ref = eigenvalues(model, batches, k=args.k, tol=1e-8, seed=1, hvp=args.hvp).eigenvalues
        print(f"reference (Lanczos tol 1e-8, seed 1): {time.perf_counter() - t0:.1f} s")
        print(f"  landscape max relative error {np.max(np.abs(ours.eigenvalues - ref) / np.abs(ref)):.2e}")

    if args.skip_pyhessian:
        return
    if not available():
        print("pyhessian not installed: pip install landscape-toolkit[pyhessian]")
        return
    _sync(device)
    theirs = pyhessian_measure(model, batches, k=args.k, tol=args.tol, max_iter=args.max_iter,
                               trace_probes=args.probes, seed=0)
    _sync(device)
    vals = np.sort(theirs["eigenvalues"])[::-1]
    print(f"pyhessian: top-{args.k} {theirs['seconds_eigenvalues']:.1f} s; trace {theirs['trace']:.6g} ± "
          f"{theirs['trace_stderr']:.2g} in {theirs['seconds_trace']:.1f} s; {theirs['n_hvp']} HVPs in all")
    print("  eigenvalues:", " ".join(f"{v:.6g}" for v in vals))
    if ref is not None:
        print(f"  pyhessian max relative error {np.max(np.abs(vals - ref) / np.abs(ref)):.2e}")
    print(f"ratios pyhessian / landscape: top-{args.k} time {theirs['seconds_eigenvalues'] / t_eig:.2f}x, "
          f"trace time {theirs['seconds_trace'] / t_tr:.2f}x (same probe count: the gain is Hutch++'s stderr, "
          f"{tr.stderr:.2g} vs {theirs['trace_stderr']:.2g})")


if __name__ == "__main__":
    main()
