"""Smoke test per wheel vs the bare target CPython start under qemu-arm, side by side in one run.

    python bench/smoke_bench.py                     # every recipe on the default targets
    python bench/smoke_bench.py --target bookworm-armhf --rounds 5 --no-write

For each target and sysroot: the bare start (`qemu-arm -L SYSROOT pythonX.Y -c pass`, median of
the rounds), the earlier way (host `pip install --target` + one qemu run, per wheel), and the
current `smoke_many` (one qemu run for all wheels): cold (an empty smoke cache: dependency
download, install, byte-compile) and warm (median of the rounds). Wheels come from cached builds
(`pipeline.build_all` reuses them). Writes bench/smoke_results.json and the smoke section of
bench/README.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from ot2wheels import pipeline  # noqa: E402
from ot2wheels.paths import Layout  # noqa: E402
from ot2wheels.smoke import install_for_target, run_smoke, smoke_many  # noqa: E402
from ot2wheels.toolchains import get_toolchain  # noqa: E402

START, END = "<!-- smoke:start -->", "<!-- smoke:end -->"


def bare_start(toolchain, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.monotonic()
        subprocess.run([*toolchain.qemu_command(), str(toolchain.target_python), "-c", "pass"], check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def earlier_way(recipe, wheel: Path, toolchain) -> tuple[float, bool]:
    """What a smoke test cost before: a host pip process per wheel, then one qemu run."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        install_for_target(toolchain.target, Path(tmp), [str(wheel), *recipe.smoke.requires],
                           find_links=[wheel.parent], python=toolchain.build_python())
        passed, _out = run_smoke(recipe, toolchain, Path(tmp))
    return time.monotonic() - started, passed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", action="append", help="target name (default: the default targets)")
    ap.add_argument("--rounds", type=int, default=3, help="warm rounds (and bare starts) to take the median of")
    ap.add_argument("--dist", type=Path, default=None, help="dist/ to take (or build) the wheels in")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    project = pipeline.Project.load(Layout.discover(dist=args.dist))
    pairs = project.matrix(None, args.target)
    print(f"building (or reusing) {len(pairs)} wheel(s) ...", flush=True)
    built = [b for b in pipeline.build_all(project, pairs, say=lambda s: None, jobs=1) if b.ok and b.wheel]
    groups: dict[tuple[str, tuple[str, ...]], list] = {}
    for b in built:
        groups.setdefault((b.target.name, b.recipe.target_libs), []).append(b)
    rows = []
    load_before = os.getloadavg()[0]
    for (target_name, libs), group in groups.items():
        tc = get_toolchain(group[0].target, project.layout, libs)
        tc.ensure()
        items = [(b.recipe, b.wheel) for b in group]
        earlier = [earlier_way(r, w, tc) for r, w in items]
        bares = []
        with tempfile.TemporaryDirectory() as empty:
            started = time.monotonic()
            cold = smoke_many(items, tc, cache=Path(empty))
            cold_total = time.monotonic() - started
            warm_runs, warm_totals = [], []
            for _ in range(args.rounds):
                bares.append(bare_start(tc, 1))  # taken beside each warm round: the same machine load
                started = time.monotonic()
                warm_runs.append(smoke_many(items, tc, cache=Path(empty)))
                warm_totals.append(time.monotonic() - started)
        bare = statistics.median(bares)
        for i, (_recipe, wheel) in enumerate(items):
            row = {"target": target_name, "wheel": wheel.name, "bare_start_s": round(bare, 2),
                   "earlier_s": round(earlier[i][0], 2), "cold_s": cold[i].duration_s,
                   "warm_s": round(statistics.median(run[i].duration_s for run in warm_runs), 2),
                   "passed": cold[i].passed and all(run[i].passed for run in warm_runs) and earlier[i][1]}
            rows.append(row)
            print(f"  {target_name} {wheel.name}: bare start {row['bare_start_s']:.2f}s, earlier "
                  f"{row['earlier_s']:.2f}s, cold {row['cold_s']:.2f}s, warm {row['warm_s']:.2f}s"
                  f"{'' if row['passed'] else '  FAILED'}", flush=True)
        rows.append({"target": target_name, "wheel": f"(all {len(items)} in one run)", "bare_start_s": round(bare, 2),
                     "earlier_s": round(sum(e[0] for e in earlier), 2), "cold_s": round(cold_total, 2),
                     "warm_s": round(statistics.median(warm_totals), 2), "passed": None})
    wheels = [r for r in rows if r["passed"] is not None]
    per_wheel = {k: round(sum(r[k] for r in rows if r["passed"] is None) / max(1, len(wheels)), 2)
                 for k in ("earlier_s", "cold_s", "warm_s")}
    print(f"per wheel, all targets: earlier {per_wheel['earlier_s']}s, cold {per_wheel['cold_s']}s, "
          f"warm {per_wheel['warm_s']}s")
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "rounds": args.rounds,
               "cpus": os.cpu_count(), "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
               "rows": rows, "per_wheel": per_wheel}
    if not args.no_write:
        (HERE / "smoke_results.json").write_text(json.dumps(results, indent=2) + "\n")
        readme = HERE / "README.md"
        text = readme.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            text = head + markdown(results) + rest.split(END, 1)[1]
            readme.write_text(text)
    return 0


def markdown(results: dict) -> str:
    lines = [START, "", f"Measured {results['date']} on {results['cpus']} CPUs with a load average of "
             f"{results['load'][0]} (start) / {results['load'][1]} (end): other jobs shared the machine. "
             f"Warm and the bare start are medians of {results['rounds']} rounds, each bare start taken "
             "right before a warm round.", "",
             "| target | wheel | bare `python -c pass` | earlier (pip + qemu) | cold | warm |",
             "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['target']} | {r['wheel']} | {r['bare_start_s']:.2f} s | {r['earlier_s']:.2f} s | "
                     f"{r['cold_s']:.2f} s | {r['warm_s']:.2f} s |" + (" FAILED" if r["passed"] is False else ""))
    p = results["per_wheel"]
    lines += ["", f"Per wheel over all targets (batch totals / wheels): earlier {p['earlier_s']} s, "
              f"cold {p['cold_s']} s, warm **{p['warm_s']} s**.", "", END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
