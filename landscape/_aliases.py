"""Old module paths keep importing: ``landscape.params`` is ``landscape.core.params``, and so on.

One ``sys.meta_path`` finder with an explicit table. Its loader returns the new module object itself
(``sys.modules[OLD] is sys.modules[NEW]``), so there is never a second copy of a module: monkeypatching and
``isinstance`` see the same objects whichever path imported them. A submodule of an aliased package that the
table does not list is refused rather than loaded a second time under the old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

_A = "landscape.analyses"
_ANALYSES = ("surface", "hessian", "predictiveness", "inputspace", "attention")

ALIASES: dict[str, str] = {
    "landscape.params": "landscape.core.params",
    "landscape.grid": "landscape.core.grid",
    "landscape.data": "landscape.core.data",
    "landscape.checkpoint": "landscape.core.checkpoint",
    "landscape._pickle_scan": "landscape.core._pickle_scan",
    "landscape._device": "landscape.core.device",
    "landscape._fs": "landscape.core.fs",
    "landscape._budget": "landscape.core.budget",
    "landscape._eval": "landscape.core._eval",
    "landscape.store": "landscape.core.store",
    "landscape.store._h5": "landscape.core.store",
    "landscape.cli._options": "landscape.core.options",
    "landscape.plotting": "landscape.core.figure",
    "landscape.surface": f"{_A}.surface.compute",
    "landscape.directions": f"{_A}.surface.directions",
    "landscape.hessian": f"{_A}.hessian",
    # The algorithm modules were named like the API functions they hold (trace, density, lanczos); renamed so that
    # ``import``ing one never shadows a function. Importing an old path gives the module, and the package keeps
    # the function under that name (see ``_Package`` in landscape/analyses/hessian/__init__.py).
    f"{_A}.hessian.trace": f"{_A}.hessian.hutch",
    f"{_A}.hessian.density": f"{_A}.hessian.slq",
    f"{_A}.hessian.lanczos": f"{_A}.hessian.krylov",
    "landscape.hessian.trace": f"{_A}.hessian.hutch",
    "landscape.hessian.density": f"{_A}.hessian.slq",
    "landscape.hessian.lanczos": f"{_A}.hessian.krylov",
    "landscape.hessian.operator": f"{_A}.hessian.operator",
    "landscape.hessian._api": f"{_A}.hessian.compute",
    "landscape.hessian._perlayer": f"{_A}.hessian.perlayer",
    "landscape.hessian._pyhessian": f"{_A}.hessian.pyhessian",
    "landscape.predictiveness": f"{_A}.predictiveness.compute",
    "landscape.inputspace": f"{_A}.inputspace.compute",
    "landscape.attention": f"{_A}.attention.compute",
    **{f"landscape.store.{n}": f"{_A}.{n}.schema" for n in _ANALYSES},
    **{f"landscape.plotting.{n}": f"{_A}.{n}.plot" for n in _ANALYSES},
    **{f"landscape.cli.{n}": f"{_A}.{n}.command" for n in _ANALYSES},
}
# Old names that were packages: the import system reads ``__path__`` of the parent before asking any finder.
_PARENTS = {old.rsplit(".", 1)[0] for old in ALIASES} & set(ALIASES)
# ``from landscape.store import surface`` asks for the submodule under the parent's real name
# (``landscape.core.store.surface``): the same aliases under the new parents' names.
_VIA_NEW_PARENT = {f"{ALIASES[parent]}.{old.rsplit('.', 1)[1]}": new
                   for old, new in ALIASES.items() for parent in _PARENTS if old.rsplit(".", 1)[0] == parent}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self._spec = module.__spec__  # the import system overwrites __spec__ with the old name's; put it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec
        if module.__spec__ is not None and module.__spec__.name in {ALIASES[p] for p in _PARENTS} \
                and not hasattr(module, "__path__"):
            module.__path__ = []  # a module standing in for an old package (landscape.store): its submodules are aliases


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        new = ALIASES.get(fullname) or _VIA_NEW_PARENT.get(fullname)
        if new is not None and new != fullname:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))
        parent, _, leaf = fullname.rpartition(".")
        if parent in ALIASES:
            # Loading it from the new package's folder under the old name would make a second copy of the module.
            raise ModuleNotFoundError(f"No module named {fullname!r}; import {ALIASES[parent]}.{leaf} instead",
                                      name=fullname)
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
