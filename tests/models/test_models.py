"""Models: every name builds and trains a step; block equations; published parameter counts."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from landscape import LandscapeError, build_model
from landscape.models import AttentionModule, AttentionWeights, BasicBlock, count_parameters, list_models


def test_registry_covers_every_family_and_depth():
    names = set(list_models())
    for family in ("resnet", "fmmnet", "se_resnet", "se_fmmnet", "cbam_resnet", "cbam_fmmnet"):
        for depth in (8, 20, 32, 44, 56, 110, 18, 34):
            assert f"{family}{depth}" in names
    assert "resnet56_noshort" in names


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_backward(name):
    for channels in (1, 3):
        model = build_model(name, num_classes=7, in_channels=channels)
        out = model(torch.randn(2, channels, 8, 8))
        assert out.shape == (2, 7)
        out.sum().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _manual_branch(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    out = F.relu(block.bn1(block.conv1(x)))
    return block.bn2(block.conv2(out))


@pytest.mark.parametrize("stride,in_planes,planes", [(1, 8, 8), (2, 8, 16)])
def test_block_merges_follow_their_equations(stride, in_planes, planes):
    torch.manual_seed(0)
    x = torch.randn(3, in_planes, 8, 8)
    for merge, combine in [("add", torch.add), ("mul", torch.mul),
                           ("gate", lambda f, s: s * torch.sigmoid(f)), ("none", None)]:
        block = BasicBlock(in_planes, planes, stride, merge=merge).eval()
        for bn in (block.bn1, block.bn2):  # non-trivial BN so the test sees it
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        f = _manual_branch(block, x)
        if combine is None:
            expected = F.relu(f)
            assert block.shortcut is None
        else:
            if stride == 1:
                s = x
            else:
                conv, bn = block.shortcut[0], block.shortcut[1]
                assert conv.kernel_size == (1, 1) and conv.stride == (2, 2)
                s = bn(conv(x))
            expected = F.relu(combine(f, s))
        torch.testing.assert_close(block(x), expected, rtol=0, atol=0)


def test_fmmnet_and_resnet_share_architecture_but_not_merge():
    r, m = (build_model(n, num_classes=10, in_channels=3) for n in ("resnet20", "fmmnet20"))
    assert [k for k in r.state_dict()] == [k for k in m.state_dict()]
    assert {b.merge for b in r.modules() if isinstance(b, BasicBlock)} == {"add"}
    assert {b.merge for b in m.modules() if isinstance(b, BasicBlock)} == {"mul"}


@pytest.mark.parametrize("name,published", [("resnet20", 0.27e6), ("resnet56", 0.85e6), ("resnet110", 1.7e6)])
def test_parameter_counts_match_he_et_al(name, published):
    # He et al. counted option-A (zero-padding) shortcuts; our default projection adds exactly two 1×1 convs + BN.
    padded = count_parameters(build_model(name, num_classes=10, in_channels=3, shortcut="pad"))
    assert float(f"{padded:.2g}") == published
    projected = count_parameters(build_model(name, num_classes=10, in_channels=3))
    assert projected - padded == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_pad_shortcut_refused_for_products():
    with pytest.raises(LandscapeError, match="zeroes channels"):
        build_model("fmmnet20", num_classes=10, in_channels=3, shortcut="pad")


def test_width_multiplier_scales_channels():
    model = build_model("resnet8", num_classes=10, in_channels=1, width=2)
    assert model.conv1.out_channels == 32 and model.fc.in_features == 128


@pytest.mark.parametrize("name", ["se_resnet8", "cbam_fmmnet8"])
@pytest.mark.parametrize("attention_merge", ["mul", "add"])
def test_attention_weights_reach_hooks(name, attention_merge):
    model = build_model(name, num_classes=10, in_channels=1, attention_merge=attention_merge).eval()
    modules = [m for m in model.modules() if isinstance(m, AttentionModule)]
    assert len(modules) == 3 and all(m.merge == attention_merge for m in modules)
    seen = []
    for m in modules:
        assert isinstance(m.channel_weights, AttentionWeights)
        m.channel_weights.register_forward_hook(lambda mod, inp, out: seen.append(out))
    model(torch.randn(4, 1, 8, 8))
    assert len(seen) == 3
    for w, m in zip(seen, modules):
        c = m.channel_weights
        assert c.kind == "channel"
        assert w.shape[:2] == (4, m.mlp[0].in_channels if hasattr(m, "mlp") else m.fc[0].in_channels)
        assert ((w > 0) & (w < 1)).all()


def test_attention_merge_changes_the_operation():
    torch.manual_seed(0)
    mod = build_model("se_resnet8", num_classes=10, in_channels=1).stages[0][0].attention.eval()
    x = torch.randn(2, 16, 4, 4)
    w = torch.sigmoid(mod.fc(x.mean(dim=(2, 3), keepdim=True)))
    torch.testing.assert_close(mod(x), x * w)
    mod.merge = "add"
    torch.testing.assert_close(mod(x), x + w)


def test_user_model_from_module_callable(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        def tiny(num_classes, in_channels, hidden=5):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, num_classes))
        NOT_A_MODEL = 3
        def returns_int():
            return 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("my_models:tiny", num_classes=4, in_channels=1, hidden=6)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    assert model.landscape_spec["model"] == "my_models:tiny"
    for spec, fragment in [("no_such_module_xyz:f", "cannot import"), ("my_models:missing", "no attribute"),
                           ("my_models:NOT_A_MODEL", "not callable"), ("my_models:returns_int", "not a torch.nn.Module"),
                           ("my_models:", "package.module:callable")]:
        with pytest.raises(LandscapeError, match=fragment):
            build_model(spec, num_classes=4, in_channels=1)
    sys.modules.pop("my_models", None)


def test_unknown_names_and_options_are_user_errors():
    with pytest.raises(LandscapeError, match="did you mean.*resnet20"):
        build_model("resnet21", num_classes=10, in_channels=3)
    with pytest.raises(LandscapeError, match="does not take option.*colour"):
        build_model("resnet8", num_classes=10, in_channels=3, colour="red")
    with pytest.raises(LandscapeError, match="merge="):
        build_model("resnet8", num_classes=10, in_channels=3, merge="xor")


def test_user_callables_that_fail_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "sec_bad_import.py").write_text("raise RuntimeError('no GPU here\\nsecond line')\n")
    (tmp_path / "sec_exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "sec_callables.py").write_text(textwrap.dedent("""
        def needs_depth(num_classes, in_channels, depth):
            raise AssertionError("never called")
        def positional_only(a, /):
            raise AssertionError("never called")
        def raises(num_classes, in_channels, hidden=3):
            raise ValueError(f"hidden={hidden} is odd")
        def type_error(**kwargs):
            return None + 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [("sec_bad_import:f", {}, "importing module 'sec_bad_import' for model 'sec_bad_import:f' failed with "
                                      "RuntimeError: no GPU here"),
             ("sec_exits:f", {}, "failed with SystemExit: 3"),
             ("sec_callables:needs_depth", {}, "needs argument(s) depth"),
             ("sec_callables:positional_only", {}, "needs argument(s) a"),
             ("sec_callables:raises", {"hidden": 5}, "raised ValueError: hidden=5 is odd when called with "
                                                     "num_classes=4, in_channels=1, hidden=5"),
             ("sec_callables:type_error", {}, "raised TypeError: unsupported operand")]
    try:
        for spec, options, fragment in cases:
            with pytest.raises(LandscapeError) as err:
                build_model(spec, num_classes=4, in_channels=1, **options)
            assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)
        # an argument the model needs can be given as an option
        with pytest.raises(LandscapeError, match="never called"):
            build_model("sec_callables:needs_depth", num_classes=4, in_channels=1, depth=3)
    finally:
        for name in ("sec_bad_import", "sec_exits", "sec_callables"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize(("options", "fragment"), [
    ({"width": float("nan")}, "width=nan must be a finite number > 0"),
    ({"width": float("inf")}, "width=inf must be a finite number > 0"),
    ({"width": -1}, "width=-1 must be a finite number > 0"),
    ({"width": 0}, "width=0 must be a finite number > 0"),
    ({"width": "wide"}, "width='wide' must be"),
    ({"width": True}, "width=True must be"),
    ({"reduction": 0}, "reduction=0 must be a whole number"),
    ({"reduction": 2.5}, "reduction=2.5 must be a whole number"),
    ({"attention": "transformer"}, "attention='transformer'; use one of se, cbam"),
    ({"shortcut": 3}, "shortcut=3; use one of projection, pad"),
    ({"width": 1e6}, "needs about"),
    ({"width": 1e300}, "needs about"),
])
def test_bad_registered_options_are_one_line_naming_the_option(options, fragment):
    with pytest.raises(LandscapeError) as err:
        build_model("se_resnet8", num_classes=10, in_channels=3, **options)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    if "needs about" in fragment:
        assert "smaller width" in str(err.value)


def test_parameter_estimate_is_close_for_every_depth():
    from landscape.models.registry import _parameter_estimate

    for depth in (8, 56, 18):
        for width in (0.5, 1.5):
            exact = count_parameters(build_model(f"resnet{depth}", num_classes=10, in_channels=3, width=width))
            assert 0.9 < _parameter_estimate(depth, width=width, num_classes=10, in_channels=3) / exact < 1.1


def test_bad_class_or_channel_counts_are_one_line():
    for kwargs in ({"num_classes": 0, "in_channels": 3}, {"num_classes": 10, "in_channels": "3"}):
        with pytest.raises(LandscapeError, match="must be a whole number ≥ 1"):
            build_model("resnet8", **kwargs)


@pytest.fixture
def cwd_only_path(tmp_path, monkeypatch):
    """A working directory that is not on ``sys.path`` (as under a console script), with a package in it."""
    pkg = tmp_path / "cwd_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("""
        import torch
        def tiny(num_classes, in_channels):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * 64, num_classes))
    """))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in ("cwd_pkg.nets", "cwd_pkg"):
        sys.modules.pop(name, None)


def test_user_model_found_in_working_directory(cwd_only_path):
    before = list(sys.path)
    model = build_model("cwd_pkg.nets:tiny", num_classes=3, in_channels=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert sys.path == before  # the working directory was on sys.path only for the import


def test_user_model_missing_says_where_it_looked(cwd_only_path):
    before = list(sys.path)
    for spec in ("cwd_pkg.absent:f", "no_such_pkg_xyz.mod:f"):
        with pytest.raises(LandscapeError) as err:
            build_model(spec, num_classes=3, in_channels=1)
        msg = str(err.value)
        assert f"looked in the working directory {cwd_only_path}" in msg and "PYTHONPATH" in msg, msg
        assert "\n" not in msg
    assert sys.path == before


def test_train_cli_finds_user_model_in_working_directory(cwd_only_path):
    from click.testing import CliRunner

    from landscape.cli import main

    result = CliRunner().invoke(main, ["train", "cwd_pkg.nets:tiny", "--epochs", "1", "--n-train", "32",
                                       "--batch-size", "16", "--out", "run", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (cwd_only_path / "run" / "final.pt").is_file()
