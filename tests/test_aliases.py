"""Old module paths (before the move to core/ and analyses/) import the very same module objects."""

import importlib
import subprocess
import sys

import pytest

import landscape
from landscape._aliases import ALIASES


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_old_path_is_the_new_module(old):
    new = importlib.import_module(ALIASES[old])
    assert importlib.import_module(old) is new
    assert sys.modules[old] is new
    assert new.__name__ == ALIASES[old] and new.__spec__.name == ALIASES[old]  # the new module keeps its identity


def test_old_api_names():
    from landscape.surface import compute_surface

    from landscape import hessian
    from landscape.analyses.hessian.compute import eigenvalues

    assert hessian.eigenvalues is eigenvalues
    assert compute_surface is importlib.import_module("landscape.analyses.surface.compute").compute_surface


def test_hessian_api_names_stay_functions_after_their_modules_load():
    import landscape.analyses.hessian as H
    import landscape.analyses.hessian.density
    import landscape.analyses.hessian.lanczos
    import landscape.analyses.hessian.trace  # noqa: F401

    for name in ("trace", "density", "lanczos"):
        assert callable(getattr(H, name)) and not isinstance(getattr(H, name), type(H)), name
    assert sys.modules["landscape.analyses.hessian.trace"].trace is not H.trace  # the op-level algorithm
    # In a fresh process, with the module imported before the API name was ever looked up.
    code = ("import landscape.analyses.hessian.trace, landscape.analyses.hessian as H; "
            "print(H.trace.__module__, type(H.lanczos).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["landscape.analyses.hessian.compute", "function"]


def test_unlisted_old_submodule_is_refused_not_copied():
    # Loading analyses/hessian/trace.py again as landscape.hessian.trace would make a second copy of the module.
    with pytest.raises(ModuleNotFoundError, match=r"landscape\.analyses\.hessian\.trace instead"):
        importlib.import_module("landscape.hessian.trace")
    assert "landscape.hessian.trace" not in sys.modules


def test_monkeypatch_through_an_old_path_reaches_the_new_module(monkeypatch):
    import landscape.grid

    import landscape.core.grid

    monkeypatch.setattr(landscape.grid, "MAX_NUM", 7)
    assert landscape.core.grid.MAX_NUM == 7


def test_import_landscape_and_help_stay_light():
    code = ("import sys, landscape; from landscape.cli import main; import landscape.analyses; "
            "print(sorted(m for m in ('h5py', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert landscape.__version__


def test_from_old_package_import_submodule():
    from landscape.plotting import surface
    from landscape.store import predictiveness

    from landscape.analyses.predictiveness import schema
    from landscape.analyses.surface import plot

    assert predictiveness is schema and surface is plot
