"""Peak host memory of ``landscape hessian --top-k 5 --trace --density`` is a stated multiple of one parameter vector.

The bound, from the algorithms (float32 model of P parameters, one float32 vector = 4P bytes; the phases run one
after another, so the peak is the largest phase):

- Lanczos, k = 5: a basis of ncv + 1 = max(2k + 1, 20) + 1 = 21 vectors, restarted in place (24 HVPs: one
  restart).
- Hutch++ with m probes: its sketch of m // 3 orthonormal rows; SLQ with s steps: s rows (full re-orthogonalisation).
  Here m = 12 and s = 10, so Lanczos is the largest.
- Beside the basis the algorithms hold: the product, the Gram-Schmidt temporary (``basisᵀ h``), the start vector,
  the finiteness mask and the float64 coefficient blocks: at most 6 vectors.
- The product itself costs what autograd needs for this model: the cached gradient graph (the gradient, the saved
  activations and weights) and the double backward's temporaries. That is the model's, not the algorithms': it is
  measured in a separate fresh process as the peak of two bare HVPs (``workspace``, about 20 vectors here).

So the command may add at most (21 + 6) · 4P bytes + ``workspace``, plus its own copy of the model and the data
(2 × the checkpoint file: state dict and module), plus 32 MiB for the allocator and h5py. The float64 code this
replaced held 2 × 21 + 2 × 12 (float64 basis and the restart's copy of the kept Ritz vectors) + 4 (float64 work
vectors) ≈ 70 float32-vector equivalents beside the workspace, so the test can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import json, sys
import torch

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)

torch.set_num_threads(1)
from landscape.cli import main
from landscape.core.checkpoint import load_checkpoint
from landscape.core.data import load_dataset
import landscape.analyses.hessian.compute, landscape.analyses.hessian.schema, h5py, tqdm.auto  # imports not counted

mode, ckpt, args = sys.argv[1], sys.argv[2], sys.argv[3:]
model, meta = load_checkpoint(ckpt)  # model and data built once, so the baseline holds the libraries' first use
x, y = load_dataset("digits", n=32, seed=0)
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark: VmHWM is now the peak of what follows
if mode == "hvp":  # the model's own HVP workspace: its gradient graph and two products, no algorithm
    from landscape.analyses.hessian.operator import HessianOperator
    with HessianOperator(model, (x, y)) as op:
        v = torch.ones(op.size)
        op.matvec(v)
        op.matvec(v)
else:
    main(["hessian", ckpt, *args], standalone_mode=False)
print(json.dumps({"base": base, "peak": status("VmHWM"),
                  "params": sum(p.numel() for p in model.parameters())}))
"""


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def measure(mode: str, checkpoint: Path, *args: str, timeout: float = 300) -> dict[str, int]:
    """Run the command (mode "command") or two bare HVPs (mode "hvp") in a fresh interpreter; bytes: RSS before,
    the peak, and the parameter count.

    glibc's malloc raises its mmap threshold after each freed multi-MiB block, so freed vectors then stay resident
    and RSS measures the allocator's history rather than what is live; a fixed threshold (MALLOC_MMAP_THRESHOLD_)
    returns them, so the peak is the live memory the bound speaks of.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(checkpoint), *args], capture_output=True, text=True,
                         env=env, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _clear_refs_works(),
                    reason="needs Linux /proc/self/status and a writable /proc/self/clear_refs (peak reset)")
def test_peak_memory_is_a_small_multiple_of_one_parameter_vector(tmp_path: Path) -> None:
    from landscape.core.checkpoint import save_checkpoint
    from landscape.training import seeded_model

    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0, width=4.5)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params >= 1_500_000
    ckpt = save_checkpoint(tmp_path / "wide.pt", model, {"dataset": "digits", "data_dir": None})
    del model
    hvp = measure("hvp", ckpt)
    r = measure("command", ckpt, "--top-k", "5", "--trace", "--density", "--probes", "12", "--lanczos-steps", "10",
                "--tol", "1e-2", "--max-iter", "24", "--n-samples", "32", "--batch-size", "32", "--quiet",
                "--out", str(tmp_path / "wide.hessian.h5"))
    assert r["params"] == n_params and (tmp_path / "wide.hessian.h5").exists()
    vector = 4 * n_params
    model_and_data = 2 * ckpt.stat().st_size + 32 * 64 * 8
    workspace = hvp["peak"] - hvp["base"]
    bound = (21 + 6) * vector + workspace + model_and_data + 32 * 2**20
    extra = r["peak"] - r["base"]
    assert extra <= bound, (f"peak {extra / 2**20:.0f} MiB above the baseline exceeds the bound "
                            f"{bound / 2**20:.0f} MiB ({extra / vector:.1f} parameter vectors; the HVP alone "
                            f"{workspace / vector:.1f})")
