"""GPU surface benchmark (issue 11): ResNet-56 on a CIFAR-shaped set, a 51×51 grid projected from measured points.

    python benchmarks/gpu_surface.py                       # CUDA: 50 000 images, fp32 and bf16, 8 measured points
    python benchmarks/gpu_surface.py --small --threads 1   # CPU-sized: 1024 images, 4 points
    python benchmarks/gpu_surface.py --small --vmap        # also: several points per forward (vmap), per point

For each precision it times, side by side in one process on the same data and directions:

* the **floor**: forward passes only over the data at the same batch, precision and memory layout, in inference
  mode (no loss, no accumulation, no weight moves);
* the **engine**: ``compute_points`` over a measured subset of the 51×51 grid's points (spread over the grid),
  i.e. weights moved in place, per-sample losses in float64, accuracy, one result per point;
* the **reference loop** (fp32 only), a faithful re-implementation of loss-landscape's ``plot_surface.py`` /
  ``evaluation.eval_loss``: weights rebuilt per point (``p.data = w + d·step``), a ``DataLoader`` per point
  (batch 128, ``num_workers=2``, per-sample ToTensor+Normalize on uint8 HWC images), the batch moved to the
  device, mean cross-entropy, and ``.item()`` twice per batch.

It prints images/s, the ratios engine/floor and engine/reference, the projected wall time of the whole grid
(points × N / images per second), the engine's agreement with the reference loop (fp32, relative, per point) and
bf16's error against fp32 on the same points. The model is randomly initialised (seeded): timings do not depend on
the weights, but bf16's error here is at an untrained point, not inside a trained basin (for that, see
``tests/analyses/surface/test_engine.py`` and docs/scale.md). ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from landscape.analyses.surface.compute import compute_points, ordered_data
from landscape.analyses.surface.directions import build_directions
from landscape.analyses.surface.engine import (
    auto_batch_size,
    forward_of,
    layout_inputs,
    precision_scope,
)
from landscape.core import params
from landscape.core.grid import Grid, parse_axis
from landscape.models import build_model

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # the reference tool's CIFAR-10 normalisation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cifar_like(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images 32×32×3 (HWC, as CIFAR-10 stores them) and labels 0..9, seeded."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=n)


def normalised(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


class ReferenceSet(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10(transform=Compose([ToTensor(), Normalize(mean, std)]))`` does per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1).float().div(255)
        return (x - self.mean) / self.std, int(self.labels[i])


def reference_point(net, weights, dirs, coefs, dataset, *, device, workers):
    """One point as loss-landscape computes it: set_weights (new tensors), then eval_loss over a fresh loader."""
    with torch.no_grad():
        for p, w, dx, dy in zip(net.parameters(), weights, dirs[0], dirs[1]):
            p.data = w + dx * coefs[0] + dy * coefs[1]  # set_weights: changes = d0*x + d1*y; p.data = w + changes
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=False, num_workers=workers)
    net.eval()
    correct, total_loss, total = 0, 0.0, 0
    with torch.no_grad():
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = net(inputs)
            loss = F.cross_entropy(outputs, targets)
            total_loss += loss.item() * len(targets)
            _, predicted = torch.max(outputs.data, 1)
            correct += predicted.eq(targets).sum().item()
            total += len(targets)
    return total_loss / total, correct / total


def floor_pass(model, xs, *, batch, precision, device):
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), precision_scope(precision, device):
        for s in range(0, len(xs), batch):
            model(xs[s:s + batch])
    _sync(device)
    return time.perf_counter() - t0


def vmap_probe(model, xs, *, batch, k, device):
    """Seconds per point of K points evaluated together (functional_call + vmap over stacked weights)."""
    from torch.func import functional_call, vmap

    stacked = {n: p.detach().unsqueeze(0).repeat(k, *[1] * p.dim()) for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def f(p, x):
        return functional_call(model, (p, buffers), (x,))

    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(xs), batch):
            vmap(f, in_dims=(0, None))(stacked, xs[s:s + batch])
    _sync(device)
    return (time.perf_counter() - t0) / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a CPU-sized run: --n 1024 --points 4 --device cpu")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--n", type=int, default=None, help="images (default 50000; 1024 with --small)")
    ap.add_argument("--grid", type=int, default=51, help="points per axis of the projected grid")
    ap.add_argument("--points", type=int, default=None, help="grid points measured (default 8; 4 with --small)")
    ap.add_argument("--reference-points", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop (its default)")
    ap.add_argument("--batch", type=int, default=None, help="engine batch (default: auto_batch_size)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                    help="auto: on (measured faster on CPU for CIFAR-shaped ResNets; unmeasured on GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the engine's and the floor's model")
    ap.add_argument("--vmap", action="store_true", help="also time K=4 points per forward with vmap")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" or args.small else args.device))
    n = args.n or (1024 if args.small else 50_000)
    n_points = max(2, args.points or (4 if args.small else 8))
    cl = args.channels_last != "off"
    machine = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
               or platform.machine(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
               "load_average_1min": os.getloadavg()[0], "torch": torch.__version__}
    print(f"machine: {machine}")

    torch.manual_seed(0)
    model = build_model(args.model, num_classes=10, in_channels=3).to(device).eval()
    images, labels = cifar_like(n)
    x, y = normalised(images), torch.from_numpy(labels)
    xs, ys = ordered_data(x, y, seed=0, device=device)
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=2, seed=0)
    grid = Grid(parse_axis(f"-1:1:{args.grid}"), parse_axis(f"-1:1:{args.grid}"))
    # The measured points: spread over the grid (corners and centre region alike).
    measured = [int(i) for i in np.linspace(0, grid.size - 1, n_points).round()]
    report: dict = {"machine": machine, "model": args.model, "n": n, "grid": list(grid.shape),
                    "measured_points": measured, "channels_last": cl, "compile": args.compile, "precisions": {}}

    losses: dict[str, np.ndarray] = {}
    for precision in args.precisions.split(","):
        batch = args.batch or auto_batch_size(model, xs, precision=precision, channels_last=cl)
        t0 = time.perf_counter()
        # Interleaved: a floor pass, then a point, so load on a shared machine hits both alike. The floor runs on
        # the model as the engine holds it between points (eval mode, its memory layout, moved weights).
        fwd = forward_of(model, compile=args.compile)
        xl = layout_inputs(xs, channels_last=cl)
        gen = compute_points(model, measured, grid=grid, base=w, directions=[ds.x, ds.y], inputs=xs, targets=ys,
                             batch_size=batch, precision=precision, channels_last=cl, compile=args.compile)
        pts = [next(gen)]  # the first point pays warm-up (and compilation)
        floor_pass(fwd, xl, batch=batch, precision=precision, device=device)  # the floor's warm-up
        floors = []
        for _ in measured[1:]:
            floors.append(floor_pass(fwd, xl, batch=batch, precision=precision, device=device))
            pts.append(next(gen))
        gen.close()
        per_point = [p.seconds for p in pts[1:]] or [pts[0].seconds]
        losses[precision] = np.array([p.loss for p in pts])
        floor, point = statistics.median(floors or [float("nan")]), statistics.median(per_point)
        row = {"batch": batch, "floor_s": floor, "point_s": point, "floor_img_s": n / floor,
               "engine_img_s": n / point, "engine_over_floor": point / floor,
               "engine_over_floor_min": min(per_point) / min(floors or [float("nan")]),
               "projected_grid_s": grid.size * point, "wall_s": time.perf_counter() - t0}
        if precision != "fp32" and "fp32" in losses:
            rel = np.abs(losses[precision] - losses["fp32"]) / np.abs(losses["fp32"])
            row["max_rel_loss_error_vs_fp32"] = float(rel.max())
        report["precisions"][precision] = row
        print(f"{precision}: batch {batch}; floor {n / floor:,.0f} img/s; engine {n / point:,.0f} img/s "
              f"({point / floor:.3f}× the floor's time, median; {row['engine_over_floor_min']:.3f}× of the minima); projected {grid.shape[0]}×{grid.shape[1]} grid: "
              f"{grid.size * point / 60:.1f} min" + (f"; max |Δloss|/loss vs fp32 {row['max_rel_loss_error_vs_fp32']:.2e}"
                                                      if "max_rel_loss_error_vs_fp32" in row else ""))

    # The reference loop, fp32, on the first measured points (its own copy of the model: it replaces p.data).
    import copy

    net = copy.deepcopy(model)
    weights = [p.detach().clone() for p in net.parameters()]
    names = [k for k, _ in net.named_parameters()]
    dirs = ([ds.x[k] for k in names], [ds.y[k] for k in names])
    dataset = ReferenceSet(images, labels)
    # The engine's data order is seeded; the reference reads in file order: the same set, so the same mean loss.
    ref_times, ref_losses = [], []
    for index in measured[:args.reference_points]:
        _sync(device)
        t0 = time.perf_counter()
        loss, _ = reference_point(net, weights, dirs, grid.coefficients(index), dataset, device=device,
                                  workers=args.workers)
        _sync(device)
        ref_times.append(time.perf_counter() - t0)
        ref_losses.append(loss)
    ref = statistics.median(ref_times)
    agree = np.abs(np.array(ref_losses) - losses.get("fp32", np.full(len(ref_losses), np.nan))[:len(ref_losses)])
    agree = agree / np.abs(np.array(ref_losses))
    report["reference"] = {"point_s": ref, "img_s": n / ref, "projected_grid_s": grid.size * ref,
                           "max_rel_loss_difference_engine_fp32": float(agree.max())}
    print(f"reference loop (fp32, batch 128, DataLoader with {args.workers} workers, weights rebuilt): "
          f"{n / ref:,.0f} img/s; projected grid {grid.size * ref / 60:.1f} min; engine fp32 agrees to "
          f"{agree.max():.1e} relative")
    for precision, row in report["precisions"].items():
        row["speedup_vs_reference"] = ref / row["point_s"]
        print(f"  {precision} engine / reference: {ref / row['point_s']:.2f}× faster")

    if args.vmap:
        batch = report["precisions"].get("fp32", next(iter(report["precisions"].values())))["batch"]
        one = floor_pass(model, xs, batch=batch, precision="fp32", device=device)
        k4 = vmap_probe(model, xs, batch=batch, k=4, device=device)
        report["vmap_k4_per_point_over_floor"] = k4 / one
        print(f"vmap, 4 points per forward: {k4 / one:.2f}× the one-point floor per point")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
