"""Old module paths (before the move to core/ and analyses/) import the very same module objects."""

import importlib
import subprocess
import sys
import types

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


def test_hessian_modules_are_named_apart_from_the_api_functions():
    import landscape.analyses.hessian as H
    import landscape.analyses.hessian.hutch as hutch
    import landscape.analyses.hessian.krylov as krylov
    import landscape.analyses.hessian.slq as slq

    # ``import … as`` reads the attribute path: with the new names it gives the modules, never a function.
    assert all(isinstance(m, types.ModuleType) for m in (hutch, slq, krylov))
    assert (hutch.trace, slq.density, krylov.lanczos) != (H.trace, H.density, H.lanczos)  # op-level algorithms
    assert H.lanczos is krylov.lanczos  # the package re-exports the operator-level Lanczos itself
    assert H.trace.__module__ == H.density.__module__ == "landscape.analyses.hessian.compute"


@pytest.mark.parametrize("old", ["landscape.analyses.hessian", "landscape.hessian"])
def test_old_hessian_module_paths_give_the_renamed_modules(old):
    import landscape.analyses.hessian as H
    from landscape.analyses.hessian import hutch, krylov, slq

    trace_mod = importlib.import_module(f"{old}.trace")
    density_mod = importlib.import_module(f"{old}.density")
    lanczos_mod = importlib.import_module(f"{old}.lanczos")
    assert (trace_mod, density_mod, lanczos_mod) == (hutch, slq, krylov)
    assert importlib.import_module(f"{old}.operator") is importlib.import_module("landscape.analyses.hessian.operator")
    ns: dict = {}
    exec(f"from {old}.trace import TraceResult, rademacher, trace", ns)
    assert ns["trace"] is hutch.trace and ns["TraceResult"] is hutch.TraceResult
    # Importing the old paths did not rebind the API's functions to the modules.
    for name in ("trace", "density", "lanczos"):
        assert callable(getattr(H, name)) and not isinstance(getattr(H, name), types.ModuleType), name
    assert H.trace.__module__ == "landscape.analyses.hessian.compute"


def test_old_hessian_paths_in_a_fresh_process_keep_the_api_functions():
    # The module imported before the API name was ever looked up, through both old paths.
    code = ("import landscape.analyses.hessian.trace, landscape.hessian.density, landscape.hessian.lanczos, landscape; "
            "import landscape.analyses.hessian as H; "
            "print(H.trace.__module__, type(H.lanczos).__name__, type(landscape.hessian.density).__name__, "
            "callable(landscape.hessian))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["landscape.analyses.hessian.compute", "function", "function", "True"]


def test_unlisted_old_submodule_is_refused_not_copied():
    # Loading analyses/hessian/schema.py again as landscape.hessian.schema would make a second copy of the module.
    with pytest.raises(ModuleNotFoundError, match=r"landscape\.analyses\.hessian\.schema instead"):
        importlib.import_module("landscape.hessian.schema")
    assert "landscape.hessian.schema" not in sys.modules


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
