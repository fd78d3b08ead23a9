import h5py
import numpy as np
import pytest

from landscape.analyses.surface import schema as store
from landscape.errors import LandscapeError


def _make(path, **attrs):
    base = {"split": "test", "seed": 0, "xspec": "-1:1:3", "yspec": "0:1:2", "norm": "filter", "model": "m"}
    base.update(attrs)
    store.create(path, attrs=base, x=np.linspace(-1, 1, 3), y=np.linspace(0, 1, 2), split="test",
                 directions={"x": {"a.weight": np.ones((2, 3)), "a.bias": np.zeros(2)},
                             "y": {"a.weight": -np.ones((2, 3)), "a.bias": np.zeros(2)}})
    return base


def test_layout_is_readable_with_h5py_alone(tmp_path):
    p = tmp_path / "s.h5"
    _make(p)
    with h5py.File(p) as f:
        assert f.attrs["schema"] == "landscape.surface/1" and not f.attrs["complete"]
        assert f["xcoordinates"].shape == (3,) and f["ycoordinates"].shape == (2,)
        for name in ("test_loss", "test_acc", "test_loss_stderr", "n_evaluated", "done"):
            assert f[name].shape == (3, 2), name
        assert np.isnan(f["test_loss"][()]).all() and not f["done"][()].any()
        assert f["directions/x/a.weight"].shape == (2, 3) and "a.bias" in f["directions/y"]
        assert f["test_loss"].chunks is None  # contiguous: writing a point touches raw data only


def test_writer_fills_cells_and_marks_complete(tmp_path):
    p = tmp_path / "s.h5"
    _make(p)
    with store.Writer(p, split="test") as w:
        w.write((2, 0), loss=1.5, acc=0.25, stderr=0.1, n=7, seconds=0.5)
    d = store.read(p)
    assert d.loss[2, 0] == 1.5 and d.acc[2, 0] == 0.25 and d.n_evaluated[2, 0] == 7 and d.done.sum() == 1
    assert np.isnan(d.loss[0, 0]) and not d.attrs["complete"]
    with store.Writer(p, split="test") as w:
        for idx in np.ndindex(3, 2):
            if idx != (2, 0):
                w.write(idx, loss=float(sum(idx)), acc=0.0, stderr=0.0, n=1, seconds=1.0)
    d = store.read(p)
    assert d.attrs["complete"] and d.attrs["compute_seconds"] == 5.5 and d.done.all()
    assert store.read_directions(p)["y"]["a.weight"].tolist() == (-np.ones((2, 3))).tolist()


def test_settings_mismatch_names_the_difference(tmp_path):
    p = tmp_path / "s.h5"
    attrs = _make(p)
    store.check_settings(p, attrs)
    store.check_settings(p, {**attrs, "device": "cuda"})  # not part of a surface's identity
    with pytest.raises(LandscapeError, match="seed=0, this run asks for seed=3"):
        store.check_settings(p, {**attrs, "seed": 3})
    with pytest.raises(LandscapeError, match="precision_target"):
        store.check_settings(p, {**attrs, "precision_target": 1e-3})


def test_bad_files_give_one_line_errors(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(LandscapeError, match="not a readable HDF5"):
        store.read(junk)
    with pytest.raises(LandscapeError, match="file not found"):
        store.read(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(LandscapeError, match="no 'schema'"):
        store.read(tmp_path / "foreign.h5")


def test_failed_create_leaves_no_file(tmp_path):
    p = tmp_path / "s.h5"
    with pytest.raises(TypeError):
        store.create(p, attrs={}, x=np.zeros(2), y=None, split="train", directions={"x": {"w": object()}})
    assert not p.exists() and not list(tmp_path.iterdir())


def test_readers_see_a_running_file_and_a_second_writer_is_refused(tmp_path):
    import subprocess
    import sys
    import textwrap

    p = tmp_path / "s.h5"
    _make(p)
    child = textwrap.dedent(f"""
        import sys, time
        from landscape.analyses.surface import schema as store
        with store.Writer({str(p)!r}, split="test") as w:
            w.write((0, 0), loss=2.0, acc=0.5, stderr=0.1, n=3, seconds=0.1)
            print("ready", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        d = store.read(p)  # `landscape info` and `plot` work on a file being written
        assert d.loss[0, 0] == 2.0 and d.done.sum() == 1
        with pytest.raises(LandscapeError, match=rf"landscape process {proc.pid} on .* is writing .*s\.h5"):
            with store.Writer(p, split="test"):
                pass
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    with store.Writer(p, split="test") as w:  # the lock is gone with the writer
        w.write((1, 1), loss=1.0, acc=0.5, stderr=0.1, n=3, seconds=0.1)
