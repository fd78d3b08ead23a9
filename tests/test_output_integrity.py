"""One writer per output, files that never claim what they lack, failed writes and damaged files in one line."""

import errno
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from analyses.surface.test_compute import _run, _same_files, _settings
from click.testing import CliRunner

from landscape.analyses.surface import schema as store
from landscape.cli import main
from landscape.errors import LandscapeError

TESTS = os.path.dirname(__file__)
S1 = _settings("-1:1:5", "0:1:3", batch_size=6)  # 15 points on the small conv-BN net of test_surface


def _litter(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".lock")))


def _fail_pwrite_at(monkeypatch, call, err=errno.ENOSPC):
    """Make the ``call``-th os.pwrite (1-based) fail like a full disk; the calls before it go through."""
    real, count = os.pwrite, [0]

    def pwrite(fd, data, pos):
        count[0] += 1
        if count[0] == call:
            raise OSError(err, os.strerror(err))
        return real(fd, data, pos)
    monkeypatch.setattr(os, "pwrite", pwrite)


def _assert_honest(path):
    """Every point the file calls done holds all its values, and ``complete`` only when all are."""
    d = store.read(path)
    assert d.n_lacking == 0
    assert (d.n_evaluated[d.done] >= 1).all() and np.isfinite(d.loss[d.done]).all()
    assert not d.flagged[~d.done].any()  # a point whose write failed may hold some values, never the flag
    assert bool(d.attrs["complete"]) == bool(d.done.all())
    return d


# Each point is 6 checked writes (loss, acc, stderr, n_evaluated, point_seconds, then done): fail the 4th point at
# its first value, in the middle, and at its flag.
@pytest.mark.parametrize("which", [1, 4, 6])
def test_failed_write_at_kth_point_stops_with_one_line_and_resume_is_identical(tmp_path, monkeypatch, which):
    _run(tmp_path / "ref.h5", S1)
    out = tmp_path / "s.h5"
    _fail_pwrite_at(monkeypatch, 3 * 6 + which)
    with pytest.raises(LandscapeError, match=r"cannot write .*s\.h5: No space left on device; free space or "
                                             "choose another output; finished points are kept") as err:
        _run(out, S1)
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    d = _assert_honest(out)
    assert d.done.sum() == 3 and not d.attrs["complete"]
    assert _litter(tmp_path) == []
    assert _run(out, S1).n_computed == 12
    _assert_honest(out)
    _same_files(out, tmp_path / "ref.h5")


def test_flags_without_values_are_not_trusted_and_are_recomputed(tmp_path):
    """A file left by a writer whose value writes were lost (the old failure: flags set, values missing)."""
    ref, out = tmp_path / "ref.h5", tmp_path / "s.h5"
    _run(ref, S1)
    shutil.copy(ref, out)
    with h5py.File(out, "r+") as f:  # 4 points lose their sample counts and error bars, flags and `complete` stay
        for idx in [(0, 0), (1, 2), (3, 1), (4, 2)]:
            f["n_evaluated"][idx] = -1
            f["train_loss_stderr"][idx] = np.nan
        f["point_seconds"][2, 2] = np.nan  # and one its timing
        assert f.attrs["complete"] and f["done"][()].all()
    d = store.read(out)
    assert d.n_lacking == 5 and d.done.sum() == 10
    r = CliRunner().invoke(main, ["info", str(out)])
    assert r.exit_code == 0 and "10/15 points (incomplete" in r.output and "5 marked done but lacking" in r.output
    assert _run(out, S1).n_computed == 5
    _assert_honest(out)
    _same_files(out, ref)


_RLIMIT_CHILD = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, {tests!r})
    import h5py
    from analyses.surface import test_compute as t
    from landscape.errors import LandscapeError
    s = t._settings("-1:1:5", "0:1:3", batch_size=6)
    class Stop(Exception):
        pass
    def stop(r):
        raise Stop
    try:
        t._run({out!r}, s, callback=stop)  # the file exists, one point done
    except Stop:
        pass
    with h5py.File({out!r}) as f:
        limit = f["done"].id.get_offset() + 5  # the last dataset, one byte a flag: the 6th point's flag exceeds it
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        t._run({out!r}, s)
    except LandscapeError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        sys.exit(1)
""")


def test_file_size_limit_mid_loop_keeps_an_honest_file(tmp_path):
    ref, out = tmp_path / "ref.h5", tmp_path / "s.h5"
    _run(ref, S1)
    proc = subprocess.run([sys.executable, "-c", _RLIMIT_CHILD.format(tests=TESTS, out=str(out))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "File too large" in proc.stderr and "finished points are kept" in proc.stderr
    d = _assert_honest(out)
    assert d.done.sum() == 5 and not d.attrs["complete"]
    assert _run(out, S1).n_computed == 10
    _same_files(out, ref)


_SLOW_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from analyses.surface import test_compute as t
    from landscape.errors import LandscapeError
    def cb(r):
        print("point", flush=True)
        time.sleep(0.03)
    try:
        t._run({out!r}, t._settings("-1:1:5", "0:1:3", batch_size=6), callback=cb)
    except LandscapeError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        sys.exit(1)
""")


def test_a_second_run_or_overwrite_during_a_run_is_refused(tmp_path):
    ref, out = tmp_path / "ref.h5", tmp_path / "s.h5"
    _run(ref, S1)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CHILD.format(tests=TESTS, out=str(out))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("point")
        for overwrite in (False, True):
            with pytest.raises(LandscapeError, match=rf"landscape process {proc.pid} on .* is writing .*s\.h5"):
                _run(out, _settings("-1:1:5", "0:1:3", batch_size=6, seed=7), overwrite=overwrite)
    finally:
        proc.communicate(timeout=300)
    assert proc.returncode == 0
    _assert_honest(out)
    _same_files(out, ref)  # the running job's file, neither replaced nor mixed with the refused runs'


def test_simultaneous_starts_on_one_output_leave_one_consistent_file(tmp_path):
    ref, out = tmp_path / "ref.h5", tmp_path / "s.h5"
    _run(ref, S1)
    code = _SLOW_CHILD.format(tests=TESTS, out=str(out))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, errs):  # each either finished the surface or was refused by the other's lock
        assert p.returncode == 0 or (p.returncode == 1 and "is writing" in err and len(err.splitlines()) == 1), err
    assert any(p.returncode == 0 for p in procs)
    _assert_honest(out)
    _same_files(out, ref)


def test_grid_too_large_to_hold_is_refused_up_front(tmp_path, digits_ckpt):
    r = CliRunner().invoke(main, ["surface", str(digits_ckpt), "--x", "-1:1:100000", "--y", "-1:1:100000",
                                  "--out", str(tmp_path / "big.h5")])
    assert r.exit_code == 1 and "needs about" in r.output and "10,000,000,000 points" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
    from landscape.analyses.surface.compute import check_grid_fits
    from landscape.core.grid import Grid, parse_axis

    check_grid_fits(Grid(parse_axis("-1:1:1000")), available=1 << 20)  # 90 kB fits in 1 MiB
    with pytest.raises(LandscapeError, match="needs about 8.6 MiB but only 1.0 MiB"):
        check_grid_fits(Grid(parse_axis("-1:1:1000"), parse_axis("-1:1:100")), available=1 << 20)


def test_a_long_surface_warns_with_the_estimate(tmp_path, monkeypatch):
    import landscape.analyses.surface.compute as surface
    from landscape.core.budget import warn_if_long

    monkeypatch.setattr(surface, "warn_if_long", functools.partial(warn_if_long, threshold=0.0))
    with pytest.warns(UserWarning, match=r"the surface .*s\.h5 \(15 points\) will take about"):
        _run(tmp_path / "s.h5", S1)


def _limited(limit):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return pre


def _cli(*args, limit=None):
    return subprocess.run([sys.executable, "-c", "from landscape.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=300, preexec_fn=None if limit is None else
                          _limited(limit))


def _one_line_error(proc):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    return lines[0]


def test_cli_file_size_limits_one_line_no_litter_and_resume(tmp_path, digits_ckpt):
    args = ["surface", digits_ckpt, "--x", "-1:1:7", "--n-samples", 40, "--batch-size", 20, "--quiet"]
    runner = CliRunner()
    assert runner.invoke(main, [str(a) for a in (*args, "--out", tmp_path / "ref.h5")]).exit_code == 0
    out = tmp_path / "s.h5"
    (tmp_path / ".s.h5.x1y2z3.tmp").write_bytes(b"")  # what a kill at file creation leaves
    line = _one_line_error(_cli(*args, "--out", out, limit=4096))  # the new file cannot be created
    assert "cannot write" in line and "File too large" in line
    assert not out.exists() and _litter(tmp_path) == []  # the stale temp file was swept, the new one removed
    # In process, a full disk at the 3rd point's sample count; then a file-size limit at the 5th point's flag.
    mp = pytest.MonkeyPatch()
    _fail_pwrite_at(mp, 2 * 6 + 4)
    try:
        r = runner.invoke(main, [str(a) for a in (*args, "--out", out)])
    finally:
        mp.undo()
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        f"error: cannot write {out}: No space left on device; free space or choose another output; finished points "
        "are kept"]
    assert _assert_honest(out).done.sum() == 2
    with h5py.File(out) as f:
        limit = f["done"].id.get_offset() + 4  # the 5th point's flag is beyond the limit
    line = _one_line_error(_cli(*args, "--out", out, limit=limit))
    assert "File too large" in line and "finished points are kept" in line
    assert _assert_honest(out).done.sum() == 4 and _litter(tmp_path) == []
    r = runner.invoke(main, [str(a) for a in (*args, "--out", out)])
    assert r.exit_code == 0 and "3 point(s) computed, 7 in all" in r.output
    _same_files(out, tmp_path / "ref.h5")
    # A figure that cannot be written: one line, nothing left beside it.
    line = _one_line_error(_cli("plot", out, "--out", tmp_path / "fig.png", limit=2000))
    assert "cannot write" in line and not (tmp_path / "fig.png").exists() and _litter(tmp_path) == []


def _damage(path, how):
    if how == "truncated":
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(size // 2)
        return
    with h5py.File(path, "r+") as f:
        if how == "no x coordinates":
            del f["xcoordinates"]
        elif how == "no y coordinates":
            del f["ycoordinates"]
        elif how == "done of the wrong shape":
            del f["done"]
            f["done"] = np.zeros((2, 2), dtype=bool)
        elif how == "done of the wrong dtype":
            del f["done"]
            f["done"] = np.zeros((5, 3), dtype=np.float64)
        elif how == "loss of another shape":
            del f["train_loss"]
            f["train_loss"] = np.zeros((5, 4))
        elif how == "no sample counts":
            del f["n_evaluated"]
        elif how == "split not a name":
            f.attrs["split"] = 3
        elif how == "metadata not text":
            f.attrs["split"] = np.bytes_(b"\xff\xfe\x00")
        elif how == "coordinates not increasing":
            f["xcoordinates"][0] = 5.0


DAMAGE = ["truncated", "no x coordinates", "no y coordinates", "done of the wrong shape", "done of the wrong dtype",
          "loss of another shape", "no sample counts", "split not a name", "metadata not text",
          "coordinates not increasing"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_surface_files_are_one_line_everywhere(tmp_path, how):
    good, bad = tmp_path / "good.h5", tmp_path / "bad.h5"
    _run(good, S1)
    shutil.copy(good, bad)
    _damage(bad, how)
    runner = CliRunner()
    for args in (["info", bad], ["plot", bad, "--out", tmp_path / "f.png"],
                 ["compare", good, bad, "--out", tmp_path / "c.png"]):
        r = runner.invoke(main, [str(a) for a in args])
        assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit)), r.exception
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], (args, r.output)
        assert "damaged" in lines[0] or "not a readable HDF5" in lines[0], lines[0]
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "c.png").exists()
    with pytest.raises(LandscapeError, match="damaged|not a readable HDF5") as err:  # resume
        _run(bad, S1)
    assert "\n" not in str(err.value)


def test_damaged_files_of_other_kinds_are_one_line(tmp_path):
    from landscape.analyses.attention.schema import write_attention
    from landscape.analyses.hessian.schema import write_hessian
    from landscape.analyses.inputspace.schema import write_inputspace
    from landscape.analyses.predictiveness.schema import write as write_pred

    corr = {"spearman": 0.5, "spearman_p": 0.1, "kendall": 0.4, "kendall_p": 0.2}
    files = {
        "hessian": (lambda p: write_hessian(p, attrs={"model": "m"}, eigenvalues=np.arange(3.0)), None),
        "predictiveness": (lambda p: write_pred(p, eta=[0.1, 0.2], step=[0], loss=[[1.0, 2.0]],
                                                 grad_diff=[[0.1, 0.2]], beta=[1.0], train_loss=[1.0],
                                                 grad_norm=[1.0]), "step"),
        "attention": (lambda p: write_attention(p, modules=[{"name": "a", "kind": "SE", "mean_weight": [1.0, 2.0],
                                                              "importance": [0.5, 0.1], **corr}],
                                                attrs={"importance": "ablation", **corr}), "modules/000/importance"),
        "inputspace": (lambda p: write_inputspace(p, mode="noise", arrays={"sigma": [0.0, 0.1],
                                                                           "loss": [[1.0, 2.0]],
                                                                           "acc": [[1.0, 0.5]]}), "sigma"),
    }
    runner = CliRunner()
    for kind, (write, dataset) in files.items():
        p = tmp_path / f"{kind}.h5"
        write(p)
        assert runner.invoke(main, ["plot", str(p), "--out", str(tmp_path / "ok.png")]).exit_code == 0, kind
        with h5py.File(p, "r+") as f:
            if dataset is None:  # every dataset of a Hessian file is optional: damage its metadata instead
                f.attrs["model"] = np.bytes_(b"\xff\xfe")
            else:
                del f[dataset]
        for args in (["plot", p, "--out", tmp_path / "f.png"], ["compare", p, p, "--out", tmp_path / "c.png"]):
            r = runner.invoke(main, [str(a) for a in args])
            lines = r.output.strip().splitlines()
            assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), (kind, r.output)
            assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)
        p.write_bytes(p.read_bytes()[:1000])  # truncated
        r = runner.invoke(main, ["info", str(p)])
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, (kind, r.output)
    assert _litter(tmp_path) == []


def test_store_writes_hold_the_output_lock_and_fail_in_one_line(tmp_path, monkeypatch):
    from landscape.analyses.hessian.schema import write_hessian
    from landscape.core.fs import output_lock

    out = tmp_path / "h.h5"
    child = textwrap.dedent(f"""
        import sys
        from landscape.core.fs import output_lock
        with output_lock({str(out)!r}):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LandscapeError, match=rf"landscape process {proc.pid} .* is writing"):
            write_hessian(out, attrs={}, eigenvalues=np.ones(2))
    finally:
        proc.communicate("\n", timeout=30)
    assert not out.exists()
    with output_lock(out):  # re-entrant: a command holding the lock for its whole run may write its file
        write_hessian(out, attrs={}, eigenvalues=np.ones(2))
    assert out.exists() and _litter(tmp_path) == []
