"""Permutation alignment of hidden units by weight matching (Ainsworth et al. 2023, "Git Re-Basin").

A network computes the same function when the hidden units of a layer are permuted and the weights that read them
are permuted to match. A :class:`PermutationSpec` says which axis of which state-dict tensor each permutation acts
on; :func:`weight_matching` then finds, by coordinate descent over the permutations (each step one
``linear_sum_assignment``), the permutation of model B that maximises ``Σ ⟨θ_A, π(θ_B)⟩`` over the parameters.

Specs exist for MLPs (a chain of ``nn.Linear`` layers with elementwise activations, optionally ``BatchNorm1d``) and
for the registered ResNet/FMMNet families: the residual stream of a stage (stem included for the first) shares one
permutation, every block's inner channels have their own, and so do the hidden units of SE/CBAM attention. BN
parameters and running statistics are permuted with the convolution that feeds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

SUPPORTED = ("MLPs (nn.Linear layers with elementwise activations, optionally BatchNorm1d) and the registered "
             "ResNet/FMMNet families (resnet*, fmmnet*, se_*, cbam_*, *_noshort; shortcut='projection')")

Axes = tuple[str | None, ...]  # one permutation name (or None: not permuted) per tensor axis


@dataclass(frozen=True)
class PermutationSpec:
    """``axes[key]``: the permutation acting on each axis of state-dict tensor ``key`` (keys not listed are never
    permuted); ``cost_keys``: the tensors whose agreement weight matching maximises (the parameters)."""

    axes: dict[str, Axes]
    cost_keys: frozenset[str] = field(default_factory=frozenset)
    kind: str = ""

    @property
    def perm_to_axes(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for key, names in self.axes.items():
            for axis, name in enumerate(names):
                if name is not None:
                    out.setdefault(name, []).append((key, axis))
        return out


def _builder(model: nn.Module) -> tuple[dict[str, Axes], set[str]]:
    return {}, {n for n, _ in model.named_parameters()}


def mlp_spec(model: nn.Module) -> PermutationSpec | None:
    """The spec of a chain of ``nn.Linear`` layers (``None`` when ``model`` is not one)."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    layers = [(n, m) for n, m in leaves if any(True for _ in m.parameters(recurse=False)) or
              isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers or not all(isinstance(m, (nn.Linear, nn.BatchNorm1d)) for _, m in layers):
        return None
    linears = [(n, m) for n, m in layers if isinstance(m, nn.Linear)]
    if len(linears) < 2 or not isinstance(layers[0][1], nn.Linear) or not isinstance(layers[-1][1], nn.Linear):
        return None
    axes, params = _builder(model)
    hidden: str | None = None  # the permutation of the units the next layer reads
    width = 0
    k = 0
    for name, m in layers:
        pre = f"{name}." if name else ""
        if isinstance(m, nn.Linear):
            if hidden is not None and m.in_features != width:
                return None
            last = m is linears[-1][1]
            out = None if last else f"P{k}"
            axes[pre + "weight"] = (out, hidden)
            if m.bias is not None:
                axes[pre + "bias"] = (out,)
            hidden, width, k = out, m.out_features, k + 1
        else:  # BatchNorm1d on the units of the Linear before it
            if hidden is None or m.num_features != width:
                return None
            for key in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m, key, None) is not None:
                    axes[pre + key] = (hidden,)
    return PermutationSpec(axes, frozenset(params & set(axes)), kind="mlp")


def resnet_spec(model: nn.Module) -> PermutationSpec | None:
    """The spec of a registered ResNet/FMMNet (``None`` for other models; an error for a ResNet whose shortcuts
    zero-pad channels, which ties the stages' permutations together)."""
    from landscape.models.attention import CBAM, SqueezeExcitation
    from landscape.models.resnet import BasicBlock, ResNet, _PadShortcut

    if not isinstance(model, ResNet):
        return None
    axes, params = _builder(model)

    def conv(key: str, out: str | None, inp: str | None, m: nn.Module) -> None:
        axes[f"{key}.weight"] = (out, inp, None, None)
        if getattr(m, "bias", None) is not None:
            axes[f"{key}.bias"] = (out,)

    def bn(key: str, p: str) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            axes[f"{key}.{name}"] = (p,)

    conv("conv1", "S0", None, model.conv1)
    bn("bn1", "S0")
    prev = "S0"
    for i, stage in enumerate(model.stages.children()):
        stream = f"S{i}"
        for j, block in enumerate(stage.children()):
            if not isinstance(block, BasicBlock):  # pragma: no cover (the registry builds BasicBlocks only)
                return None
            pre, inner = f"stages.{i}.{j}", f"B{i}.{j}"
            conv(f"{pre}.conv1", inner, prev, block.conv1)
            bn(f"{pre}.bn1", inner)
            conv(f"{pre}.conv2", stream, inner, block.conv2)
            bn(f"{pre}.bn2", stream)
            if isinstance(block.shortcut, _PadShortcut):
                raise LandscapeError(f"alignment does not support shortcut='pad' (zero-padded channels tie the "
                                     f"stages together); it supports {SUPPORTED}")
            if isinstance(block.shortcut, nn.Sequential):
                conv(f"{pre}.shortcut.0", stream, prev, block.shortcut[0])
                bn(f"{pre}.shortcut.1", stream)
            elif isinstance(block.shortcut, nn.Identity) and prev != stream:  # pragma: no cover (never built)
                return None
            att, hid = block.attention, f"A{i}.{j}"
            if isinstance(att, SqueezeExcitation):
                conv(f"{pre}.attention.fc.0", hid, stream, att.fc[0])
                conv(f"{pre}.attention.fc.2", stream, hid, att.fc[2])
            elif isinstance(att, CBAM):  # the spatial map pools over channels: it sees no permutation
                conv(f"{pre}.attention.mlp.0", hid, stream, att.mlp[0])
                conv(f"{pre}.attention.mlp.2", stream, hid, att.mlp[2])
            elif att is not None:
                return None
            prev = stream
    axes["fc.weight"] = (None, prev)
    return PermutationSpec(axes, frozenset(params & set(axes)), kind="resnet")


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The spec of ``model``, or a one-line error naming what is supported."""
    spec = resnet_spec(model) or mlp_spec(model)
    if spec is None:
        raise LandscapeError(f"align=True cannot permute {type(model).__name__}: it supports {SUPPORTED}")
    state = model.state_dict()
    bad = [k for k in spec.axes if k not in state]
    if bad:  # pragma: no cover (a spec built from this very model)
        raise LandscapeError(f"align=True: {type(model).__name__} has no tensor '{bad[0]}'; it supports {SUPPORTED}")
    return spec


def _permuted(spec: PermutationSpec, perms: Mapping[str, torch.Tensor], key: str, w: torch.Tensor,
              *, skip: int | None = None) -> torch.Tensor:
    for axis, name in enumerate(spec.axes[key]):
        if name is not None and axis != skip:
            w = torch.index_select(w, axis, perms[name].to(w.device))
    return w


def apply_permutation(spec: PermutationSpec, perms: Mapping[str, torch.Tensor],
                      state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every listed axis permuted (``new[i] = old[perm[i]]``); other entries as they are."""
    return {k: (_permuted(spec, perms, k, v) if k in spec.axes else v) for k, v in state.items()}


def random_permutation(spec: PermutationSpec, state: Mapping[str, torch.Tensor], *, seed: int
                       ) -> dict[str, torch.Tensor]:
    """A seeded random permutation for every permutation of ``spec`` (for tests and null models)."""
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, axes in spec.perm_to_axes.items():
        key, axis = axes[0]
        out[name] = torch.randperm(state[key].shape[axis], generator=gen)
    return out


@dataclass(frozen=True)
class Alignment:
    """The permutations found (``perms[name][i]``: the unit of B moved to position ``i``), the coordinate-descent
    sweeps taken, whether they converged, and ``Σ⟨θ_A, π(θ_B)⟩`` before and after."""

    perms: dict[str, np.ndarray]
    sweeps: int
    converged: bool
    objective_before: float
    objective_after: float
    kind: str


def weight_matching(spec: PermutationSpec, state_a: Mapping[str, torch.Tensor],
                    state_b: Mapping[str, torch.Tensor], *, max_sweeps: int = 100, seed: int = 0) -> Alignment:
    """Coordinate descent over the permutations in a seeded random order, each solved exactly with
    ``scipy.optimize.linear_sum_assignment`` given the others, until a sweep improves nothing (float64 costs)."""
    from scipy.optimize import linear_sum_assignment

    a = {k: state_a[k].detach().double().cpu() for k in spec.cost_keys}
    b = {k: state_b[k].detach().double().cpu() for k in spec.cost_keys}
    p2a = {p: [(k, ax) for k, ax in axes if k in spec.cost_keys] for p, axes in spec.perm_to_axes.items()}
    names = sorted(p2a)
    sizes = {p: a[p2a[p][0][0]].shape[p2a[p][0][1]] for p in names}
    perms = {p: torch.arange(sizes[p]) for p in names}

    def objective() -> float:
        return float(sum((a[k] * _permuted(spec, perms, k, b[k])).sum() for k in spec.cost_keys))

    before = objective()
    gen = torch.Generator().manual_seed(int(seed))
    sweeps, converged = 0, False
    while sweeps < max_sweeps:
        sweeps += 1
        improved = False
        for idx in torch.randperm(len(names), generator=gen).tolist():
            p, n = names[idx], sizes[names[idx]]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis in p2a[p]:
                wa = torch.movedim(a[key], axis, 0).reshape(n, -1)
                wb = torch.movedim(_permuted(spec, perms, key, b[key], skip=axis), axis, 0).reshape(n, -1)
                cost += wa @ wb.T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            old = float(cost[torch.arange(n), perms[p]].sum())
            new = float(cost[torch.arange(n), torch.as_tensor(cols)].sum())
            if new > old + 1e-12 * max(abs(old), 1.0):
                perms[p] = torch.as_tensor(cols, dtype=torch.long)
                improved = True
        if not improved:
            converged = True
            break
    return Alignment({p: perms[p].numpy() for p in names}, sweeps, converged, before, objective(), spec.kind)


@torch.no_grad()
def align(model_a: nn.Module, model_b: nn.Module, *, probe: torch.Tensor | None = None, seed: int = 0,
          max_sweeps: int = 100) -> tuple[nn.Module, Alignment]:
    """A copy of ``model_b`` with its hidden units permuted to match ``model_a``, and the :class:`Alignment`.

    With ``probe`` (a few inputs) the copy's outputs are checked against ``model_b``'s in eval mode: a model whose
    forward does not follow the assumed structure is refused rather than silently changed.
    """
    import copy

    spec = permutation_spec(model_a)
    result = weight_matching(spec, model_a.state_dict(), model_b.state_dict(), max_sweeps=max_sweeps, seed=seed)
    perms = {p: torch.as_tensor(v) for p, v in result.perms.items()}
    aligned = copy.deepcopy(model_b)
    aligned.load_state_dict(apply_permutation(spec, perms, model_b.state_dict()))
    if probe is not None:
        from landscape.core.state import ModelState

        with ModelState(model_b, mode="eval", values=False), ModelState(aligned, mode="eval", values=False):
            before, after = model_b(probe), aligned(probe)
        scale = float(before.abs().max()) or 1.0
        gap = float((before - after).abs().max())
        if not gap <= 1e-4 * scale:
            raise LandscapeError(f"align=True changed model_b's outputs (max difference {gap:.3g}): its forward "
                                 f"does not follow the layer order landscape assumed; it supports {SUPPORTED}")
    return aligned, result
