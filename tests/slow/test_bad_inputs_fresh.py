"""The whole bad-input table through fresh interpreters (``python -c 'from landscape.cli import main; main()'``)
rather than the zygote's forks: the same rules, at the full cost of starting Python and torch each time."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reliability._support import CLI, record_figure, run_real
from reliability.test_bad_inputs import CASES, assets, problems, run_case  # noqa: F401  (assets is a fixture)


def test_every_bad_input_through_a_fresh_interpreter(assets, cli: CLI, tmp_path: Path) -> None:  # noqa: F811
    def fresh(argv, **kw):
        return run_real(argv, cwd=kw["cwd"], env={"PYTHONPATH": str(assets.mods)}, timeout=kw["timeout"])

    with ThreadPoolExecutor(max_workers=int(os.environ.get("LANDSCAPE_RELIABILITY_WORKERS", "2"))) as pool:
        outcomes = list(pool.map(lambda c: run_case(fresh, c, assets, tmp_path), CASES))
    failed = {o.case.id: problems(o) for o in outcomes if problems(o)}
    print(f"\n{len(CASES)} bad inputs through fresh interpreters, {len(CASES) - len(failed)} handled")
    record_figure("bad_inputs_fresh", tried=len(CASES), handled=len(CASES) - len(failed))
    assert not failed, "\n".join(f"{k}: {'; '.join(v)}" for k, v in failed.items())
