"""Thread-count benchmark (not a test): ``landscape demo`` on a busy machine, default threads vs the alternatives.

    python benchmarks/threads.py --quick --reps 2       # the quick demo (seconds per run alone)
    python benchmarks/threads.py --reps 2               # the full demo (minutes per run, far more with all cores)

Starts ``--busy`` background processes that spin (``while True: pass``), waits ``--warmup`` seconds so the 1-minute
load average sees them (the default reads it), then runs the demo in a fresh process and output folder under each
setting, the settings rotated from one repetition to the next so a change in the machine's load hits all alike:

- ``default``: no ``--threads``, with LANDSCAPE_THREADS and OMP_NUM_THREADS unset (``default_threads()``);
- ``omp1``: ``OMP_NUM_THREADS=1``;
- ``all-cores``: ``--threads N`` with N torch's own default (one thread per physical core), the old behaviour.

It prints each run's seconds and the thread count the default chose, then per setting the median and range, and the
ratio of the default's median to the better of the other two (the goal: at most 1.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = "from landscape.cli import main; main()"  # python -c puts the working directory (the repo) first on sys.path


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LANDSCAPE_THREADS", "MKL_NUM_THREADS")}
    env["MPLBACKEND"] = "Agg"
    return {**env, **extra}


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(), check=True,
                          capture_output=True, text=True).stdout.strip()


def _run_demo(args: list[str], env: dict[str, str], quick: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", CLI, *args, "demo", "--out", str(Path(tmp) / "demo")] + (["--quick"] * quick)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"demo failed ({' '.join(args)}): {done.stderr.strip()[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the quick demo")
    ap.add_argument("--busy", type=int, default=2, help="spinning background processes")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds the busy processes run before the first demo")
    ap.add_argument("--settings", default="default,omp1,all-cores",
                    help="comma-separated subset of default, omp1, all-cores (all-cores is the slow old behaviour)")
    args = ap.parse_args()

    all_cores = int(_python("import torch; print(torch.get_num_threads())"))
    settings = {"default": ([], _clean_env()),
                "omp1": ([], _clean_env(OMP_NUM_THREADS="1")),
                f"all-cores ({all_cores})": (["--threads", str(all_cores)], _clean_env())}
    wanted = {w.strip() for w in args.settings.split(",") if w.strip()}
    settings = {k: v for k, v in settings.items() if k.split(" ")[0] in wanted}
    if not settings:
        ap.error("--settings names none of default, omp1, all-cores")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    times: dict[str, list[float]] = {name: [] for name in settings}
    try:
        time.sleep(args.warmup)
        names = list(settings)
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                chosen = _python("from landscape.core.threads import default_threads; print(default_threads())")
                load = os.getloadavg()[0]
                flags, env = settings[name]
                seconds = _run_demo(flags, env, args.quick)
                times[name].append(seconds)
                print(f"rep {rep + 1} {name:<16} {seconds:8.1f} s   load {load:4.2f}, default would pick {chosen}",
                      flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()

    print(f"\n{'demo --quick' if args.quick else 'demo'}, {args.busy} busy processes, {os.cpu_count()} CPUs, "
          f"{args.reps} reps")
    for name, ts in times.items():
        print(f"  {name:<16} median {statistics.median(ts):8.1f} s   range {min(ts):.1f} .. {max(ts):.1f} s")
    best_name = min((n for n in names if n != "default"), key=lambda n: statistics.median(times[n]))
    ratio = statistics.median(times["default"]) / statistics.median(times[best_name])
    # The load from elsewhere drifts between repetitions; runs of one repetition are neighbours in time.
    paired = [d / b for d, b in zip(times["default"], times[best_name])]
    print(f"  default / {best_name}: {ratio:.2f} of medians; per repetition "
          f"{', '.join(f'{r:.2f}' for r in paired)} (goal <= 1.5)")
    for name in names[1:]:
        print(f"  {name} / default: {statistics.median(times[name]) / statistics.median(times['default']):.2f}")


if __name__ == "__main__":
    main()
