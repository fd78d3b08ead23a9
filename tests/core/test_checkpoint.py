"""Checkpoints: round trip, plain state dicts, and one-line refusals of hostile, broken or foreign files."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from landscape import LandscapeError, build_model, load_checkpoint, save_checkpoint
from landscape.core.checkpoint import file_sha256


def _model():
    torch.manual_seed(0)
    return build_model("resnet8", num_classes=10, in_channels=1, merge="gate")


def test_round_trip_keeps_weights_options_and_metadata(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "m.pt", model, {"dataset": "digits", "epoch": 3, "seed": 7})
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert meta["model"] == "resnet8" and meta["model_options"] == {"merge": "gate"}
    assert meta["dataset"] == "digits" and meta["epoch"] == 3 and meta["seed"] == 7
    assert meta["library_version"] and meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind
    assert file_sha256(path) == meta["sha256"]


def test_plain_state_dict_needs_and_accepts_a_model_name(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(LandscapeError, match="say which model it is with model=$"):
        load_checkpoint(tmp_path / "plain.pt")
    loaded, meta = load_checkpoint(tmp_path / "plain.pt", model="resnet8", model_options={"merge": "gate"})
    assert meta["in_channels"] == 1 and meta["num_classes"] == 10  # inferred from the tensors
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_hostile_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": {}, "payload": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(LandscapeError, match="refusing to load") as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_raw_and_legacy_hostile_pickles_name_the_import(tmp_path, monkeypatch, recwarn, protocol):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw.pt").write_bytes(pickle.dumps({"state_dict": {}, "x": _Evil()}, protocol=protocol))
    torch.save({"payload": _Evil()}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False,
               pickle_protocol=protocol)
    for name in ("raw.pt", "legacy.pt"):
        with pytest.raises(LandscapeError, match=r"refusing to load .*(posix|os|nt)\.system") as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists()
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_broken_and_foreign_files(tmp_path):
    model = _model()
    good = save_checkpoint(tmp_path / "good.pt", model, {})
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("hello, I am not a checkpoint\n")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    cases = [("missing.pt", "not found"), ("trunc.pt", "not a readable PyTorch checkpoint"),
             ("text.pt", "not a readable PyTorch checkpoint"), ("list.pt", "holds a list")]
    for name, fragment in cases:
        with pytest.raises(LandscapeError, match=fragment) as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(LandscapeError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_wrong_architecture_names_what_differs(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(_model().state_dict(), path)
    with pytest.raises(LandscapeError, match=r"does not fit model 'resnet20'.*missing key") as err:
        load_checkpoint(path, model="resnet20")
    assert "\n" not in str(err.value)
    with pytest.raises(LandscapeError, match="shape mismatch"):
        load_checkpoint(path, model="resnet8", model_options={"width": 2})


def test_recorded_model_cannot_be_rebuilt_as_another(tmp_path):
    path = save_checkpoint(tmp_path / "r8.pt", _model(), {})  # resnet8 with merge="gate"
    for kwargs, fragment in (({"model": "fmmnet8"}, "resnet8 vs fmmnet8"),
                             ({"model_options": {"merge": "add"}}, "merge='gate' vs 'add'")):
        with pytest.raises(LandscapeError, match="records its model") as err:
            load_checkpoint(path, **kwargs)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    # repeating what the checkpoint records is harmless
    load_checkpoint(path, model="resnet8", model_options={"merge": "gate"})


def test_unwritable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LandscapeError, match="cannot create output folder"):
        save_checkpoint(blocker / "sub" / "m.pt", _model(), {})


def test_folder_that_refuses_new_files_is_a_user_error(tmp_path, monkeypatch):
    # os.access can say "writable" where creating a file still fails (root on /proc, some network mounts).
    import tempfile

    from landscape.analyses.surface import schema as surface

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    for write in (lambda p: save_checkpoint(p, _model(), {}),
                  lambda p: surface.create(p, attrs={}, x=np.zeros(2), y=None, split="train", directions={})):
        with pytest.raises(LandscapeError, match="cannot create a file in .*Permission denied") as err:
            write(tmp_path / "out")
        assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.pt", _model(), {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_output_path_ending_in_a_slash_is_refused(tmp_path):
    with pytest.raises(LandscapeError, match="names a folder"):
        save_checkpoint(str(tmp_path / "sub") + "/", _model(), {})
    assert list(tmp_path.iterdir()) == []


def _with_meta(path, meta, state=None):
    """A landscape-format file with arbitrary (possibly damaged) metadata."""
    from landscape.core.checkpoint import FORMAT, atomic_torch_save

    state = _model().state_dict() if state is None else state
    atomic_torch_save({"format": FORMAT, "state_dict": state, "meta": meta}, path)
    return path


@pytest.mark.parametrize(("meta", "fragment"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    (42, "'meta' is a int"),
    ('{"model": "resnet8", "num_classes": "abc"}', "'num_classes' is 'abc'"),
    ('{"model": "resnet8", "num_classes": [10]}', "'num_classes' is [10]"),
    ('{"model": "resnet8", "num_classes": true}', "'num_classes' is True"),
    ('{"model": "resnet8", "in_channels": 0}', "'in_channels' is 0"),
    ('{"model": "resnet8", "model_options": ["merge", "gate"]}', "'model_options'"),
    ('{"model": 5}', "'model' is 5"),
    ('{"model": ["resnet8"]}', "'model' is ['resnet8']"),
    ('{"model": "resnet8", "dataset": {"name": "digits"}}', "'dataset'"),
    ('{"model": "resnet8", "model_options": {"merge": "gate", "width": "wide"}}', "width='wide'"),
    ('{"model": "resnet8", "model_options": {"merge": "gate", "reduction": [1]}}', "reduction=[1]"),
    ('{"model": "resnet8", "model_options": {"merge": {"x": 1}}}', "merge={'x': 1}"),
    ('{"model": "resnet8", "model_options": {"colour": "red"}}', "does not take option(s) colour"),
    ('{"model": "resnet8", "num_classes": 1000000000000}', "needs about"),
    ('{"model": "nosuchmodel"}', "not a registered model"),
])
def test_malformed_metadata_is_one_line_naming_file_and_field(tmp_path, meta, fragment):
    path = _with_meta(tmp_path / "bad.pt", meta)
    with pytest.raises(LandscapeError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_state_dict_of_non_tensors_is_refused(tmp_path):
    path = _with_meta(tmp_path / "bad.pt", '{"model": "resnet8"}', state={"conv1.weight": "not a tensor"})
    with pytest.raises(LandscapeError, match=r"bad\.pt: state dict entry 'conv1.weight' is a str, not a tensor"):
        load_checkpoint(path)


def test_fifo_and_devices_are_not_regular_files(tmp_path):
    import signal

    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)

    def hung(*_):
        raise AssertionError("load_checkpoint blocked on a FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(LandscapeError, match=r"pipe\.pt is not a regular file \(a named pipe\)") as err:
            load_checkpoint(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "\n" not in str(err.value)
    if os.path.exists("/dev/zero"):
        with pytest.raises(LandscapeError, match=r"/dev/zero is not a regular file \(a character device\)"):
            load_checkpoint("/dev/zero")


class _Call:
    """Pickles as a call of ``fn(*args)``: what a hostile file would do with builtins."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize(("fn", "args", "name"), [
    (exec, ("open('PWNED', 'w')",), "builtins.exec"),
    (eval, ("open('PWNED', 'w')",), "builtins.eval"),
    (getattr, ("text", "upper"), "builtins.getattr"),
    (__import__, ("os",), "builtins.__import__"),
    (open, ("PWNED", "w"), "io.open"),
])
def test_pickles_importing_builtins_are_refused_naming_the_import(tmp_path, monkeypatch, fn, args, name):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": {}, "payload": _Call(fn, *args)}, tmp_path / "evil.pt")
    with pytest.raises(LandscapeError) as err:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(err.value)
    assert not (tmp_path / "PWNED").exists()
    assert "refusing to load" in message and "would import" in message and "truncated" not in message, message
    assert name in message or name.replace("io.", "_io.") in message, message


def test_non_finite_weights_are_refused_unless_allowed(tmp_path):
    model = _model()
    with torch.no_grad():
        model.conv1.weight.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        model.fc.bias[0] = float("nan")
    path = save_checkpoint(tmp_path / "diverged.pt", model, {})
    with pytest.raises(LandscapeError, match=r"holds 4 non-finite value\(s\) in conv1\.weight \(and 1 more") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    loaded, _ = load_checkpoint(path, allow_nonfinite=True)
    assert torch.isnan(loaded.fc.bias[0])


def test_identical_tensors_give_identical_bytes(tmp_path):
    import subprocess
    import sys

    model = _model()
    a = save_checkpoint(tmp_path / "a.pt", model, {"epoch": 1})
    b = save_checkpoint(tmp_path / "sub" / "b.pt", model, {"epoch": 1})
    assert a.read_bytes() == b.read_bytes()
    # Round trip: what is loaded and saved again is the same file (a no-op resume keeps its SHA-256).
    loaded, meta = load_checkpoint(a)
    c = save_checkpoint(tmp_path / "c.pt", loaded, {"epoch": 1, "library_version": meta["library_version"]})
    assert file_sha256(c) == file_sha256(a)
    # Another process, another name, same bytes.
    code = ("import sys, torch; from landscape import load_checkpoint, save_checkpoint; "
            "m, _ = load_checkpoint(sys.argv[1]); save_checkpoint(sys.argv[2], m, {'epoch': 1})")
    subprocess.run([sys.executable, "-c", code, str(a), str(tmp_path / "d.pt")], check=True)
    assert (tmp_path / "d.pt").read_bytes() == a.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "c.pt", "d.pt", "sub"]  # no temp files
    other = save_checkpoint(tmp_path / "e.pt", model, {"epoch": 2})
    assert file_sha256(other) != file_sha256(a)  # the metadata is part of the identity


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_scan_reads_imports_without_running_them(tmp_path, protocol):
    from landscape.core._pickle_scan import allowed_globals, pickle_imports, unsafe_imports

    path = tmp_path / "p.pkl"
    # The same global twice: from protocol 4 on, the second STACK_GLOBAL takes its strings from the memo.
    path.write_bytes(pickle.dumps([_Call(os.system, "true"), _Call(os.system, "true"), _Call(len, "ab")],
                                  protocol=protocol))
    found = pickle_imports(path)
    assert found is not None and found.count(f"{os.system.__module__}.system") == 1, found
    assert "builtins.len" in found
    assert unsafe_imports(path) == [g for g in found if g not in allowed_globals()]
    assert f"{os.system.__module__}.system" in unsafe_imports(path)
    save_checkpoint(tmp_path / "ok.pt", _model())
    assert unsafe_imports(tmp_path / "ok.pt") == []  # torch's own zip format: data.pkl only imports tensor code
    (tmp_path / "text.txt").write_text("not a pickle")
    assert pickle_imports(tmp_path / "text.txt") is None and unsafe_imports(tmp_path / "text.txt") == []


def test_plain_mlp_state_dict_claims_no_image_channels(tmp_path, monkeypatch):
    """A first Linear layer's width is input features, not image channels: nothing is recorded, so the digits
    dataset is not refused for a channel count the file never stated."""
    from landscape.core.options import checkpoint_dataset

    (tmp_path / "mlpmod.py").write_text(
        "import torch\n"
        "def mlp(num_classes=10, in_channels=3):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),\n"
        "                               torch.nn.Linear(32, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mlpmod

    torch.save(mlpmod.mlp().state_dict(), tmp_path / "plain.pt")
    _, meta = load_checkpoint(tmp_path / "plain.pt", model="mlpmod:mlp")
    assert meta["in_channels"] is None and meta["num_classes"] == 10
    assert checkpoint_dataset(str(tmp_path / "plain.pt"), meta, "digits") == "digits"
