"""Surface benchmarks (not tests): per-point overhead against a forward-only pass, and adaptive sampling.

    python benchmarks/surface.py overhead            # seconds per point / forward-only floor (target <= 1.05)
    python benchmarks/surface.py adaptive --n 200000 # forward passes saved by --precision-target, and coverage
    python benchmarks/surface.py radii --threads 1   # the same, trained here, for grid radii 0.05 .. 1.0
    python benchmarks/surface.py coverage            # the stopping rule replayed over 500 random sample orders

``overhead`` times, interleaved so load on a shared machine hits both alike, (a) one forward-only pass over the
evaluation data at the same batch size in inference mode (the floor) and (b) one surface point (weights set from
base + a·dx + b·dy, per-sample losses, float64 accumulation, accuracy), and (c) whole ``compute_surface`` runs
including HDF5 writes, per point. It prints the medians and their ratios.

``adaptive`` trains nothing: it loads a checkpoint (``--ckpt``, default: a resnet8 trained here on "synthetic"),
draws a large synthetic set with the same recipe as ``landscape.data`` (class prototypes + noise), computes the
full-data surface once, then the adaptive one at each EPS, and prints the forward-pass ratio and the share of
points whose full-data loss lies within 3 reported standard errors.

``radii`` asks where adaptive precision pays off. It draws a large synthetic set (``--n``, lower noise than
"synthetic" so a small model fits it well), trains resnet8 on it briefly with ``landscape.training.train``
(seeded), then for each radius R evaluates the 1D grid -R:R:P (and, with ``--two-d``, the 2D grid -R:R:Q squared)
along random filter-normalised directions (seed 0): once over all N samples, then adaptively at each EPS. Per
radius it prints the per-sample loss spread s (from the full pass), the forward-pass ratio full/adaptive, the
ratio predicted from s (a point needs about max(min_samples, (s/EPS)²) samples, at most N), and the coverage:
the share of points whose full-data loss lies within 3 reported standard errors, over all points and over the
points that stopped early (a point that ran to N reports the full-data loss itself).

``coverage`` trains the same way, computes the per-sample losses at a few points along that direction once, and
replays the stopping rule of ``evaluate`` over ``--orders`` random sample orders: in one surface run every point
shares one order, so its points' misses are one event, and coverage is only measurable as a probability over orders.
Per point it prints the median n, the saving, the share of orders whose full-data loss lies within 3 (and 2)
reported standard errors, and the mean signed error in standard errors (the stopping rule's bias).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from landscape import load_dataset
from landscape.analyses.surface.compute import SurfaceSettings, compute_points, compute_surface, ordered_data
from landscape.analyses.surface.directions import build_directions
from landscape.core import params
from landscape.core.grid import Grid, parse_axis


def _floor(model, x, batch_size):
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            model(x[s:s + batch_size])
    return time.perf_counter() - t0


def overhead_case(name, model, x, y, *, batch_size, reps):
    model.eval()
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=2, seed=0)
    grid = Grid(parse_axis("-0.2:0.2:3"), parse_axis("-0.2:0.2:3"))
    xs, ys = ordered_data(x, y, seed=0, device="cpu")
    _floor(model, xs, batch_size)  # warm up
    floors, points = [], []
    for r in range(reps):
        floors.append(_floor(model, xs, batch_size))
        (p,) = compute_points(model, [r % grid.size], grid=grid, base=w, directions=[ds.x, ds.y], inputs=xs,
                              targets=ys, batch_size=batch_size)
        points.append(p.seconds)
    settings = SurfaceSettings(checkpoint="bench", checkpoint_sha256="-", model=name, dataset=name, split="train",
                               seed=0, norm="filter", ignore="biasbn", dir_type="weights", direction="random",
                               xspec=grid.x.spec, yspec=grid.y.spec, batch_size=batch_size)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(max(2, reps // 3)):
            t0 = time.perf_counter()
            compute_surface(model, x, y, out=Path(tmp) / f"{r}.h5", grid=grid, settings=settings,
                            directions=lambda: ds, progress=False)
            runs.append((time.perf_counter() - t0) / grid.size)
    # Medians, and minima (least disturbed by other processes on a shared machine).
    for how, agg in (("median", statistics.median), ("min", min)):
        f, p, run = agg(floors), agg(points), agg(runs)
        print(f"{name:<26} {how:<6} N={len(x):<5} batch={batch_size:<4} floor {f * 1e3:7.2f} ms  point "
              f"{p * 1e3:7.2f} ms ({p / f:.3f}x)  compute_surface/point {run * 1e3:7.2f} ms ({run / f:.3f}x)")


def overhead(args):
    from landscape.models import build_model

    torch.manual_seed(0)
    cases = [("resnet8 digits", build_model("resnet8", num_classes=10, in_channels=1), "digits", None),
             ("resnet8 synthetic-3x32x32", build_model("resnet8", num_classes=10, in_channels=3),
              "synthetic-3x32x32", args.cifar_n)]
    for name, model, data, n in cases:
        x, y = load_dataset(data, n=n)
        overhead_case(name, model, x, y, batch_size=args.batch_size, reps=args.reps)


def big_synthetic(n, *, seed=7, c=1, h=8, w=8, classes=10, noise=1.0):
    """The recipe of landscape.data's "synthetic" (same prototypes), any number of samples."""
    protos = F.avg_pool2d(torch.randn(classes, c, h + 2, w + 2, generator=torch.Generator().manual_seed(1234)), 3,
                          stride=1)
    protos = protos / protos.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=gen)
    return (protos[y] * 0.5 + noise * torch.randn(n, c, h, w, generator=gen)).contiguous(), y


def adaptive(args):
    from landscape.core.checkpoint import load_checkpoint

    model, _ = load_checkpoint(args.ckpt)
    x, y = big_synthetic(args.n)
    w = params.get_tensors(model)
    grid = Grid(parse_axis(args.x), parse_axis(args.y) if args.y else None)
    ds = build_directions("random", w, ndim=1 if grid.y is None else 2, seed=0)
    dirs = [ds.x] if ds.y is None else [ds.x, ds.y]
    xs, ys = ordered_data(x, y, seed=0, device="cpu")
    kw = dict(grid=grid, base=w, directions=dirs, inputs=xs, targets=ys, batch_size=args.batch_size)
    t0 = time.perf_counter()
    full = list(compute_points(model, range(grid.size), **kw))
    t_full = time.perf_counter() - t0
    n_full = sum(r.n for r in full)
    print(f"N={args.n} grid {grid.x.spec} {grid.y.spec if grid.y else ''} ({grid.size} points): full pass "
          f"{t_full:.0f} s, {n_full} sample-forwards; per-sample loss s from {min(r.stderr * r.n**0.5 for r in full):.3g}"
          f" to {max(r.stderr * r.n**0.5 for r in full):.3g}")
    sd = np.array([r.stderr * r.n**0.5 for r in full])
    for eps in args.eps:  # samples a point needs: s²/EPS², at least min_samples, at most N
        proj = {m: grid.size * m / np.minimum(m, np.maximum(args.min_samples, (sd / eps) ** 2)).sum()
                for m in (args.n, 10**7, 10**8, 10**9)}
        print(f"  EPS={eps:g}: predicted ratio from the measured s: "
              + ", ".join(f"N={m:.0e}: {v:.2f}x" for m, v in proj.items()))
    for eps in args.eps:
        t0 = time.perf_counter()
        fast = list(compute_points(model, range(grid.size), precision_target=eps, min_samples=args.min_samples, **kw))
        t_fast = time.perf_counter() - t0
        z = np.array([abs(a.loss - b.loss) / a.stderr if a.stderr > 0 else 0.0 for a, b in zip(fast, full)])
        n_fast = sum(r.n for r in fast)
        early = sum(r.n < args.n for r in fast)
        print(f"  EPS={eps:g}: {n_full / n_fast:5.2f}x fewer forward passes ({t_full / t_fast:4.2f}x less time), "
              f"{early}/{grid.size} points stopped early; full-data loss within 3 stderr at "
              f"{100 * np.mean(z < 3):.1f}% of points (within 2: {100 * np.mean(z < 2):.1f}%), max |z| {z.max():.2f}")


def _trained_on_big_set(args):
    """resnet8 trained briefly (seeded) on a large synthetic set; returns the model (eval mode) and the set."""
    from landscape.models import build_model
    from landscape.training import train

    x, y = big_synthetic(args.n, seed=0, noise=args.noise)
    xt, yt = big_synthetic(5000, seed=1, noise=args.noise)
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=10, in_channels=1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(model, (x, y), (xt, yt), epochs=args.epochs, batch_size=128, lr=0.05, seed=0, out_dir=tmp,
                    progress=False)
    m = res.metrics[-1]
    print(f"trained resnet8 on N={args.n} (noise {args.noise}) for {args.epochs} epochs in "
          f"{time.perf_counter() - t0:.0f} s: train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f}, "
          f"test loss {m['test_loss']:.4f} acc {m['test_acc']:.4f}")
    return model.eval(), x, y


def radii(args):
    model, x, y = _trained_on_big_set(args)
    w = params.get_tensors(model)
    xs, ys = ordered_data(x, y, seed=0, device="cpu")
    grids = [(r, Grid(parse_axis(f"-{r}:{r}:{args.points}"))) for r in args.radii]
    if args.two_d:
        grids += [(r, Grid(parse_axis(f"-{r}:{r}:{args.two_d}"), parse_axis(f"-{r}:{r}:{args.two_d}")))
                  for r in args.radii]
    dsets = {nd: build_directions("random", w, ndim=nd, seed=0) for nd in {1 if g.y is None else 2 for _, g in grids}}
    head = (f"{'grid':<24}{'pts':>4}{'s min':>8}{'s max':>8}{'loss min':>9}{'loss max':>9}"
            + "".join(f" | EPS={e:<6g}{'ratio':>7}{'pred':>7}{'n min':>8}{'n max':>8}{'cov3 all':>10}{'early':>12}"
                      f"{'max|z|':>7}" for e in args.eps))
    print(head)
    pooled = {e: [] for e in args.eps}
    for _r, grid in grids:
        ds = dsets[1 if grid.y is None else 2]
        kw = dict(grid=grid, base=w, directions=[ds.x] if grid.y is None else [ds.x, ds.y], inputs=xs, targets=ys,
                  batch_size=args.batch_size)
        full = list(compute_points(model, range(grid.size), **kw))
        sd = np.array([p.stderr * p.n**0.5 for p in full])
        loss = np.array([p.loss for p in full])
        spec = grid.x.spec + ("" if grid.y is None else f" x {grid.y.spec}")
        line = f"{spec:<24}{grid.size:>4}{sd.min():8.3g}{sd.max():8.3g}{loss.min():9.4f}{loss.max():9.4f}"
        for eps in args.eps:
            fast = list(compute_points(model, range(grid.size), precision_target=eps, min_samples=args.min_samples,
                                       **kw))
            n = np.array([p.n for p in fast])
            z = np.array([abs(a.loss - b.loss) / a.stderr if a.stderr > 0 else 0.0 for a, b in zip(fast, full)])
            early = n < args.n
            pooled[eps] += list(zip(z, early))
            pred = grid.size * args.n / np.minimum(args.n, np.maximum(args.min_samples, (sd / eps) ** 2)).sum()
            ez = f"{np.sum(z[early] < 3)}/{early.sum()}"
            line += (f" | {'':<10}{grid.size * args.n / n.sum():7.2f}{pred:7.2f}{n.min():8d}{n.max():8d}"
                     f"{100 * np.mean(z < 3):9.1f}%{ez:>12}{z.max():7.2f}")
        print(line, flush=True)
    for eps, zs in pooled.items():
        z = np.array([a for a, _ in zs])
        e = np.array([b for _, b in zs])
        print(f"EPS={eps:g}: pooled over {len(z)} points: within 3 stderr {100 * np.mean(z < 3):.1f}% "
              f"(early-stopped points: {np.sum(z[e] < 3)}/{e.sum()}, within 2: {np.sum(z[e] < 2)}/{e.sum()})")


def _first_stop(cum1, cum2, ends, *, eps, min_samples, total):
    """Index into ``ends`` where evaluate()'s rule stops (first batch end with n >= min_samples, n < total and
    s/sqrt(n) < eps), or the last one."""
    var = np.maximum(cum2 - cum1 * cum1 / ends, 0.0) / np.maximum(ends - 1, 1)
    ok = (ends >= min_samples) & (ends < total) & (np.sqrt(var / ends) < eps)
    hit = np.flatnonzero(ok)
    return int(hit[0]) if hit.size else len(ends) - 1


def coverage(args):
    """Replays the stopping rule of ``--precision-target`` over many random sample orders (on per-sample losses
    computed once), so the coverage of its error bars is a probability, not one draw."""
    model, x, y = _trained_on_big_set(args)
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=1, seed=0)
    live = params.live_tensors(model, w.keys())
    rng = np.random.default_rng(args.seed)
    ends = np.arange(args.batch_size, args.n + args.batch_size, args.batch_size).clip(max=args.n).astype(float)
    print(f"{'alpha':>6}{'loss':>9}{'s':>8}{'EPS':>8}{'min n':>7}{'orders':>8}{'stopped':>9}{'n median':>10}"
          f"{'saving':>8}{'cov3':>8}{'cov2':>8}{'bias/se':>9}")
    try:
        for alpha in args.alphas:
            params.set_tensors(live, w, [(alpha, ds.x)])
            with torch.inference_mode():
                losses = torch.cat([F.cross_entropy(model(x[i:i + 4096]), y[i:i + 4096], reduction="none")
                                    for i in range(0, args.n, 4096)]).double().numpy()
            full, sd = losses.mean(), losses.std(ddof=1)
            res = {(e, m): [] for e in args.eps for m in args.min_samples}
            for _ in range(args.orders):
                lp = losses[rng.permutation(args.n)] - full  # centred: running sums stay cancellation-free
                c1 = np.cumsum(lp)[ends.astype(int) - 1]
                c2 = np.cumsum(lp * lp)[ends.astype(int) - 1]
                for (e, m), out in res.items():
                    k = _first_stop(c1, c2, ends, eps=e, min_samples=m, total=args.n)
                    n = ends[k]
                    se = np.sqrt(max(c2[k] - c1[k] ** 2 / n, 0.0) / (n - 1) / n)
                    out.append((n, c1[k] / n / se if se > 0 else 0.0))
            for (e, m), out in res.items():
                n, z = np.array(out).T
                stopped = n < args.n
                print(f"{alpha:6.3g}{full:9.4f}{sd:8.3f}{e:8.0e}{m:7d}{args.orders:8d}{stopped.mean():8.0%} "
                      f"{np.median(n):10.0f}{args.n / n.mean():7.2f}x{np.mean(np.abs(z) < 3):8.1%}"
                      f"{np.mean(np.abs(z) < 2):8.1%}{z.mean():+9.2f}", flush=True)
    finally:
        params.set_tensors(live, w, [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--reps", type=int, default=15)
    o.add_argument("--cifar-n", type=int, default=1000)
    a = sub.add_parser("adaptive")
    a.add_argument("--ckpt", default="runs/resnet8-synthetic-s0/final.pt")
    a.add_argument("--n", type=int, default=200_000)
    a.add_argument("--x", default="-1:1:11")
    a.add_argument("--y", default="-1:1:11")
    a.add_argument("--eps", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    a.add_argument("--min-samples", type=int, default=1000)
    a.add_argument("--batch-size", type=int, default=1000)
    r = sub.add_parser("radii")
    r.add_argument("--n", type=int, default=200_000)
    r.add_argument("--noise", type=float, default=0.5, help="noise std (landscape.data's synthetic: 1.0)")
    r.add_argument("--epochs", type=int, default=2)
    r.add_argument("--radii", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0])
    r.add_argument("--points", type=int, default=7, help="1D grid -R:R:POINTS")
    r.add_argument("--two-d", type=int, default=0, help="also the 2D grid -R:R:Q squared (0: no)")
    r.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-2])
    r.add_argument("--min-samples", type=int, default=4000, help="the CLI's default")
    r.add_argument("--batch-size", type=int, default=1000)
    c = sub.add_parser("coverage")
    c.add_argument("--n", type=int, default=200_000)
    c.add_argument("--noise", type=float, default=1.0, help="noise std (landscape.data's synthetic: 1.0)")
    c.add_argument("--epochs", type=int, default=3)
    c.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 1.0],
                   help="points along one random filter-normalised direction (seed 0)")
    c.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-2])
    c.add_argument("--min-samples", type=int, nargs="+", default=[1000, 4000])
    c.add_argument("--orders", type=int, default=500, help="random sample orders replayed per point")
    c.add_argument("--seed", type=int, default=0, help="seed of the replayed orders")
    c.add_argument("--batch-size", type=int, default=1000)
    for p in (o, a, r, c):
        p.add_argument("--threads", type=int, default=None,
                       help="torch threads (default: torch's choice; use 1 on a busy machine)")
    args = ap.parse_args()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    {"overhead": overhead, "adaptive": adaptive, "radii": radii, "coverage": coverage}[args.mode](args)


if __name__ == "__main__":
    main()
