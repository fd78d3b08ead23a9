"""The fast paths of the surface point loop: precision, in-place weight moves, memory layout, compilation, batch.

Every path here reproduces the plain float32 loop (``precision="fp32"``, no ``channels_last``, no ``compile``) to
≤ 1e-5 relative per point, except ``bf16``, whose measured error is documented in ``docs/scale.md`` (tests:
``tests/analyses/surface/test_engine.py``). Several points per forward pass (``torch.func.vmap`` over stacked
weights) is deliberately absent: measured on CPU it was slower per point for every model tried (an MLP, resnet8,
resnet56; ``benchmarks/gpu_surface.py vmap``), and on GPU batched convolutions become grouped convolutions, a known
slow path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from landscape.errors import LandscapeError

Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown precision, or bf16 on a GPU without it."""
    if precision not in PRECISIONS:
        raise LandscapeError(f"precision={precision!r}; use fp32, tf32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise LandscapeError(f"precision='bf16' but {torch.cuda.get_device_name(device)} has no bfloat16; "
                             "use precision='fp32' or 'tf32'")


@contextlib.contextmanager
def precision_scope(precision: str, device: torch.device) -> Iterator[None]:
    """Arithmetic for the block: ``fp32`` (TF32 off: PyTorch turns it on for cuDNN convolutions by default, so a
    plain CUDA run is not float32), ``tf32`` (TF32 matmuls and convolutions on CUDA; float32 on CPU) or ``bf16``
    (autocast to bfloat16, on CUDA and on CPU). The global flags are put back on exit."""
    check_precision(precision, device)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        if precision == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


class Mover:
    """Writes ``base + Σ cᵢ·dᵢ`` into the model's own tensors in place with ``torch._foreach_*`` (one kernel per
    tensor group on CUDA, no new weights allocated), from the base every time, so a point's weights never depend
    on the points before it (no drift, and the same bits whichever process evaluates it)."""

    def __init__(self, live: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor],
                 directions: Sequence[Mapping[str, torch.Tensor]]) -> None:
        keys = list(live)
        self.live = [live[k] for k in keys]
        # In the live tensors' layout (channels_last moves the weights), so every add is elementwise-aligned.
        self.base = [_like(base[k], t) for k, t in zip(keys, self.live)]
        self.directions = [[_like(d[k], t) for k, t in zip(keys, self.live)] for d in directions]

    @torch.no_grad()
    def move(self, coefficients: Sequence[float]) -> None:
        torch._foreach_copy_(self.live, self.base)
        for c, d in zip(coefficients, self.directions):
            if float(c) != 0.0:  # as params.set_tensors: a zero step is skipped, so the centre is the checkpoint
                torch._foreach_add_(self.live, d, alpha=float(c))


def _like(t: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """``t`` on ``live``'s device and dtype, with ``live``'s strides (channels_last or contiguous)."""
    out = torch.empty_strided(live.shape, live.stride(), dtype=live.dtype, device=live.device)
    return out.copy_(t)


@contextlib.contextmanager
def memory_layout(model: nn.Module, *, channels_last: bool) -> Iterator[None]:
    """With ``channels_last``, the model's 4-D parameters and buffers are stored NHWC for the block (oneDNN and
    cuDNN pick faster convolutions); the original tensors are put back on exit, values and layout untouched."""
    if not channels_last:
        yield
        return
    swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                for name, t in [*module._parameters.items(), *module._buffers.items()]:
                    if t is not None and t.dim() == 4:
                        swapped.append((module, name, t.data))
                        t.data = t.data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for module, name, original in swapped:
            tensor: torch.Tensor | None = module._parameters.get(name)
            if tensor is None:
                tensor = module._buffers[name]
            assert tensor is not None, "a swapped tensor is still registered"
            tensor.data = original


def layout_inputs(inputs: torch.Tensor, *, channels_last: bool) -> torch.Tensor:
    """Images in NHWC storage for ``channels_last`` (other inputs as they are)."""
    if channels_last and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def forward_of(model: nn.Module, *, compile: bool) -> nn.Module:
    """The module to call: ``torch.compile(model)`` (static shapes: one graph for the full batch and one for the
    last) or the model itself. The compiled module shares the model's tensors, so in-place moves reach it."""
    if not compile:
        return model
    try:
        return torch.compile(model, dynamic=False)  # type: ignore[return-value]
    except RuntimeError as exc:  # e.g. an unsupported Python version
        raise LandscapeError(f"compile=True failed ({str(exc).splitlines()[0]}); run without compile") from None


# Auto batch size on CUDA: a share of the free memory, a power of two between these bounds. Beyond a few thousand
# images a batch no longer speeds up the small CIFAR networks, and a smaller one shortens the last, partial batch.
AUTO_MIN_BATCH, AUTO_MAX_BATCH, AUTO_MEMORY_SHARE = 128, 2048, 0.5


def batch_for_memory(*, free_bytes: int, bytes_per_sample: float, n_samples: int) -> int:
    """The largest power of two in ``[AUTO_MIN_BATCH, AUTO_MAX_BATCH]`` whose activations take at most
    ``AUTO_MEMORY_SHARE`` of ``free_bytes``, and no larger than needed for ``n_samples``."""
    fits = AUTO_MEMORY_SHARE * free_bytes / max(bytes_per_sample, 1.0)
    batch = AUTO_MIN_BATCH if fits < AUTO_MIN_BATCH else 2 ** math.floor(math.log2(fits))
    batch = max(AUTO_MIN_BATCH, min(AUTO_MAX_BATCH, batch))
    need = 2 ** math.ceil(math.log2(max(n_samples, 1)))
    return max(1, min(batch, need))


def auto_batch_size(model: nn.Module, inputs: torch.Tensor, *, precision: str = "fp32",
                    channels_last: bool = False) -> int:
    """The evaluation batch when none is given: 128 on CPU (where larger batches do not help); on CUDA the size
    that fits in half of the free memory (``torch.cuda.mem_get_info``), from one probe forward pass of 64 samples
    that measures the peak activation memory per sample."""
    if not inputs.is_cuda:
        return AUTO_MIN_BATCH
    device = inputs.device
    probe = layout_inputs(inputs[:64], channels_last=channels_last)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.inference_mode(), precision_scope(precision, device):
        model(probe)
    torch.cuda.synchronize(device)
    per_sample = (torch.cuda.max_memory_allocated(device) - before) / len(probe)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_for_memory(free_bytes=free, bytes_per_sample=per_sample, n_samples=len(inputs))
