"""Print the README's reliability figures by running the fast suite and the long trials.

    python tests/slow/figures.py            # everything (long: tens of minutes on 2 cores)
    python tests/slow/figures.py --fast     # only tests/reliability (a minute or two)

Each test records what it tried in LANDSCAPE_FIGURES_DIR (see tests/reliability/_support.record_figure); the line
printed at the end counts only cases that passed, so a failing run shows fewer survivors than tries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def collect(folder: Path) -> dict[str, dict[str, int]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def summarise(records: dict[str, dict[str, int]]) -> str:
    def total(prefix: str, key: str) -> int:
        return sum(v.get(key, 0) for k, v in records.items() if k == prefix or k.startswith(prefix + "_fast"))

    bad = records.get("bad_inputs", {})
    n, handled = bad.get("tried", 0), bad.get("handled", 0)
    k_tried, k_ok = total("crash", "tried"), total("crash", "survived")
    c_tried, c_ok = total("concurrency", "tried"), total("concurrency", "refused")
    w_tried, w_ok = total("write", "tried"), total("write", "survived")
    line = (f"{n} bad inputs tried, {'all' if handled == n else handled} handled; {k_ok} crash trials survived"
            f"{'' if k_ok == k_tried else f' (of {k_tried})'}; {c_ok} concurrent starts refused"
            f"{'' if c_ok == c_tried else f' (of {c_tried})'}; {w_ok} write failures survived"
            f"{'' if w_ok == w_tried else f' (of {w_tried})'}")
    return line


def main() -> int:
    fast = "--fast" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "LANDSCAPE_FIGURES_DIR": folder, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        paths = ["tests/reliability"] + ([] if fast else ["tests/slow", "--run-slow"])
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths], cwd=ROOT,
                               env=env)
        print(summarise(collect(Path(folder))))
    return code


if __name__ == "__main__":
    sys.exit(main())
