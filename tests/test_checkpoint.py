"""Checkpoints: round trip, plain state dicts, and one-line refusals of hostile, broken or foreign files."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from landscape import LandscapeError, build_model, load_checkpoint, save_checkpoint
from landscape.checkpoint import file_sha256


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
    with pytest.raises(LandscapeError, match="--model"):
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

    from landscape.store import surface

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
