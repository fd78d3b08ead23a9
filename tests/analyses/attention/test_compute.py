"""Attention weight vs importance: closed forms on hand-built modules, ablation oracle, model left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.attention.compute import (
    attention_importance,
    find_attention_modules,
    rank_correlation,
)
from landscape.errors import LandscapeError
from landscape.models import build_model
from landscape.models.attention import AttentionModule, AttentionWeights

K = 3  # classes


class FixedAttention(AttentionModule):
    """Channel weights fixed to ``w`` whatever the input."""

    def __init__(self, w: list[float]) -> None:
        super().__init__("mul")
        self.register_buffer("w", torch.tensor(w, dtype=torch.float64).view(1, -1, 1, 1))
        self.channel_weights = AttentionWeights("channel")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_weights(x, self.channel_weights(self.w.expand(x.shape[0], -1, 1, 1)))


class SumHead(nn.Module):
    """Logit of class 0 = s = Σ of all features (one branch per channel group); other logits 0."""

    def __init__(self, branches: list[nn.Module], split: list[int], shift: float = 0.0) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.split = split
        self.shift = shift
        self.unused = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [b(p) for b, p in zip(self.branches, x.split(self.split, dim=1))]
        if self.shift:
            for p in parts:
                p.add_(self.shift)  # in place on the attention output, as ``out += identity`` would be
        s = torch.cat(parts, dim=1).sum(dim=(1, 2, 3))
        return torch.stack([s] + [torch.zeros_like(s)] * (K - 1), dim=1)


def _ce0(s: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, np.log(K - 1) - s)  # −log softmax₀ with logits (s, 0, 0)


def _inputs(scale: list[float], n: int = 5) -> torch.Tensor:
    """Per-channel positive features, varied per sample: x[n, c] = scale[c] · (0.5 + n/10) on a 2×2 map."""
    f = torch.tensor(scale, dtype=torch.float64).view(1, -1, 1, 1) * (0.5 + torch.arange(n).view(-1, 1, 1, 1) / 10)
    return f.expand(-1, -1, 2, 2).double()


@pytest.mark.parametrize("shift", [0.0, -0.25])  # keeps the loss O(1): no cancellation
@pytest.mark.parametrize("importance", ["ablation", "taylor"])
def test_weights_proportional_to_importance_give_correlation_one(importance, shift):
    w = [0.1, 0.3, 0.5, 0.7, 0.9]
    model = SumHead([FixedAttention(w)], [5], shift=shift)
    x = _inputs([1.0] * 5)
    y = torch.zeros(x.shape[0], dtype=torch.long)
    res = attention_importance(model, x, y, importance=importance, batch_size=2)
    (mod,) = res.modules
    np.testing.assert_allclose(mod.mean_weight, w, rtol=1e-15)
    # Closed forms: a[n, c] = 4 x[n, c] w_c, s_n = Σ_c a[n, c], ℓ(s) = log(1 + (K−1)e^{−s}).
    a = 4 * x[:, :, 0, 0].numpy() * np.array(w)
    s = a.sum(axis=1) + 4 * 5 * shift  # the in-place shift adds to every feature after the module
    if importance == "ablation":
        expected = (_ce0(s[:, None] - a) - _ce0(s)[:, None]).mean(axis=0)
    else:
        dl_ds = -1 / (1 + np.exp(s) / (K - 1))
        expected = np.abs(a * dl_ds[:, None]).mean(axis=0)
    np.testing.assert_allclose(mod.importance, expected, rtol=1e-10)
    assert res.base_loss == pytest.approx(_ce0(s).mean(), rel=1e-12)
    for c in (mod.correlation, res.pooled):
        assert c.spearman == pytest.approx(1.0) and c.kendall == pytest.approx(1.0)
        assert c.spearman_p < 0.05


def test_anti_aligned_weights_and_pooling_over_modules():
    # Features shrink faster than the weights grow, so importance falls as the weight rises: ρ = τ = −1.
    wa, wb = [0.2, 0.4, 0.6], [0.8, 0.9]
    model = SumHead([FixedAttention(wa), FixedAttention(wb)], [3, 2])
    x = _inputs([10.0, 4.0, 2.0, 1.0, 0.5])
    res = attention_importance(model, x, torch.zeros(x.shape[0], dtype=torch.long), importance="ablation")
    assert [m.name for m in res.modules] == ["branches.0", "branches.1"]
    for c in (res.modules[0].correlation, res.modules[1].correlation, res.pooled, res.pooled_within):
        assert c.spearman == pytest.approx(-1.0) and c.kendall == pytest.approx(-1.0)


def test_within_module_pooling_ignores_scale_differences_between_modules():
    # Each module's weight order follows its importance order, but module b's importances are ~100x smaller
    # while its weights are larger: raw pooling mixes the scales, within-module ranks do not.
    wa, wb = [0.1, 0.2, 0.3], [0.7, 0.8, 0.9]
    model = SumHead([FixedAttention(wa), FixedAttention(wb)], [3, 3])
    x = _inputs([1.0, 2.0, 3.0, 0.01, 0.02, 0.03])
    res = attention_importance(model, x, torch.zeros(x.shape[0], dtype=torch.long), importance="taylor")
    for m in res.modules:
        assert m.correlation.spearman == pytest.approx(1.0)
    assert res.pooled_within.spearman == pytest.approx(1.0) and res.pooled_within.kendall == pytest.approx(1.0)
    assert res.pooled.spearman < 0.5


def test_rank_correlation_undefined_is_nan():
    assert np.isnan(rank_correlation(np.ones(4), np.arange(4.0)).spearman)
    c = rank_correlation(np.arange(6.0), np.arange(6.0) ** 3)
    assert c.spearman == pytest.approx(1.0) and c.kendall == pytest.approx(1.0)


def _se_model(name: str = "se_resnet8") -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=4, in_channels=1, width=0.5).double()


def _data(n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn((n, 1, 6, 6), generator=g, dtype=torch.float64), torch.arange(n) % 4


def test_batched_ablation_equals_one_channel_at_a_time():
    model = _se_model().eval()
    x, y = _data()
    res = attention_importance(model, x, y, importance="ablation", batch_size=5)  # chunks of 5 and 2 samples
    with torch.no_grad():
        base = nn.functional.cross_entropy(model(x), y).item()
    for (_, module, _), mod in zip(find_attention_modules(model), res.modules):
        for c in range(mod.importance.size):
            def zero(_m, _i, out, c=c):
                out = out.clone()
                out[:, c] = 0
                return out

            h = module.register_forward_hook(zero)
            with torch.no_grad():
                ablated = nn.functional.cross_entropy(model(x), y).item()
            h.remove()
            assert mod.importance[c] == pytest.approx(ablated - base, abs=1e-12)


def test_taylor_matches_autograd_per_sample():
    model = _se_model("cbam_resnet8").eval()
    x, y = _data(4)
    res = attention_importance(model, x, y, importance="taylor", batch_size=3)
    name, module, _ = find_attention_modules(model)[1]
    acts = []
    h = module.register_forward_hook(lambda _m, _i, o: acts.append(o))
    total = torch.zeros(res.modules[1].importance.size, dtype=torch.float64)
    for i in range(4):
        loss = nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        (g,) = torch.autograd.grad(loss, acts[-1])
        total += (acts[-1] * g).sum(dim=(2, 3)).abs()[0].detach()
    h.remove()
    assert res.modules[1].name == name and res.modules[1].kind == "CBAM"
    np.testing.assert_allclose(res.modules[1].importance, (total / 4).numpy(), rtol=1e-10)


@pytest.mark.parametrize("importance", ["ablation", "taylor"])
def test_model_left_unchanged(importance):
    model = _se_model().train()
    next(model.parameters()).requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data()
    with torch.no_grad():
        out_before = model.eval()(x)
    model.train()
    attention_importance(model, x, y, importance=importance, batch_size=4)
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model.eval()(x), out_before)


def test_hooks_removed_when_the_forward_raises():
    class Boom(FixedAttention):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            if Boom.calls > 2:
                raise RuntimeError("boom")
            return super().forward(x)

    model = SumHead([Boom([0.2, 0.5])], [2]).train()
    with pytest.raises(RuntimeError, match="boom"):
        attention_importance(model, _inputs([1.0, 1.0]), torch.zeros(5, dtype=torch.long), batch_size=2)
    assert all(not m._forward_hooks for m in model.modules()) and model.training


# 3 batches and 1 probe forward come first: the 1st / 4th ablated forward raises
@pytest.mark.parametrize("fail_at", [5, 8])
def test_ablation_hooks_removed_when_an_ablated_forward_raises(fail_at):
    class Boom(FixedAttention):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            if Boom.calls >= fail_at:
                raise RuntimeError("boom")
            return super().forward(x)

    model = SumHead([Boom([0.2, 0.5])], [2]).train()
    model.branches.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        # batch_size 2 over 5 samples: one channel per ablated forward, 2 channels x 3 batches = 6 forwards
        attention_importance(model, _inputs([1.0, 1.0]), torch.zeros(5, dtype=torch.long), batch_size=2,
                             importance="ablation")
    assert Boom.calls == fail_at  # it failed inside the ablation, not before
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training and not model.branches.training and not model.branches[0].training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_generic_module_with_weights_child_is_found():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = AttentionWeights("channel")
            self.spatial = AttentionWeights("spatial")

        def forward(self, x):
            return x * self.gate(torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)))

    model = SumHead([Custom()], [3])
    (found,) = find_attention_modules(model)
    assert found[0] == "branches.0" and found[2] is model.branches[0].gate
    res = attention_importance(model, _inputs([1.0, 2.0, 3.0]), torch.zeros(5, dtype=torch.long))
    assert res.modules[0].mean_weight.shape == (3,)


def test_model_without_attention_names_models_that_have_it():
    model = build_model("resnet8", num_classes=4, in_channels=1, width=0.5)
    x, y = _data(2)
    with pytest.raises(LandscapeError) as info:
        attention_importance(model, x.float(), y)
    msg = str(info.value)
    assert "\n" not in msg and "se_resnet8" in msg and "cbam_fmmnet20" in msg


def test_the_default_sample_count_fits_the_digits_test_split(tmp_path, se_digits_ckpt):
    # digits' test split holds 360 images: the default (500) must not ask for more than there are.
    import h5py
    from click.testing import CliRunner

    from landscape.cli import main

    out = tmp_path / "a.h5"
    res = CliRunner().invoke(main, ["attention", str(se_digits_ckpt), "--importance", "taylor", "--out", str(out),
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_samples"]) == 360
