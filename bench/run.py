"""ot2wheels benchmarks, measured side by side in one run.

    python bench/run.py                 # quick: markupsafe and msgpack
    python bench/run.py --all           # every recipe
    python bench/run.py --skip a,b      # parts: a emulated, b native, c warm/cold, d test-arm

(a) cross build vs emulated build (armhf gcc + target CPython under qemu-arm), per package
(b) cross build vs native x86-64 build of the same sdists
(c) cold build of the recipe set (empty dist/, empty compiler cache) vs warm rebuild (all reused)
    vs forced rebuild with a warm compiler cache
(d) test-arm (smoke test under qemu-arm) per wheel, cold (empty pip and smoke caches) and warm

Toolchains, sources and build environments come from the normal cache (they are one-time
setup, not what is compared); part (c) uses its own dist/ and ccache store in a temp dir.
Writes bench/results.json and the results section of bench/README.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import sides  # noqa: E402

from ot2wheels import ccache, pipeline  # noqa: E402
from ot2wheels.paths import Layout  # noqa: E402
from ot2wheels.smoke import smoke_test  # noqa: E402
from ot2wheels.toolchains import get_toolchain  # noqa: E402

QUICK = ["markupsafe", "msgpack"]
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    qemu = subprocess.run(["qemu-arm", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "qemu": qemu, "python": platform.python_version()}


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else 0.0


def part_ab(project: pipeline.Project, recipes: list[str], target_name: str, do_a: bool, do_b: bool,
            work: Path, repeat: int = 1) -> dict:
    target = project.targets.select([target_name])[0]
    rows = {}
    for name in recipes:
        recipe = project.recipe(name)
        if not recipe.supports(target.name, target.python):
            continue
        row: dict = {}

        def best(side, recipe=recipe) -> dict:  # the fastest of `repeat` runs: the least disturbed
            runs = [side(recipe, target, project.layout, work) for _ in range(repeat)]
            fastest = min(runs, key=lambda r: r.seconds).__dict__
            return {**fastest, "all_seconds": [r.seconds for r in runs]}

        try:
            row["cross"] = best(sides.cross_build)
            if do_b:
                row["native"] = best(sides.native_build)
            if do_a:
                print(f"  {name}: emulated build under qemu-arm (slow) ...", flush=True)
                row["emulated"] = best(sides.emulated_build)
        except (sides.BenchFailed, Exception) as exc:  # one package failing must not hide the rest
            row["error"] = str(exc).splitlines()[0]
        c = row.get("cross", {}).get("seconds")
        if c and "emulated" in row:
            row["emulated_vs_cross"] = round(row["emulated"]["seconds"] / c, 2)
        if c and "native" in row:
            row["cross_vs_native"] = round(c / row["native"]["seconds"], 2)
        rows[name] = row
        print(f"  {name}: " + ", ".join(f"{k} {v['seconds']:.1f}s ({v['machine']})" for k, v in row.items()
                                       if isinstance(v, dict)) + (f"  ERROR {row['error']}" if "error" in row else ""),
              flush=True)
    emu = {n: r["emulated_vs_cross"] for n, r in rows.items() if "emulated_vs_cross" in r}
    nat = {n: r["cross_vs_native"] for n, r in rows.items() if "cross_vs_native" in r}
    return {"target": target.name, "rows": rows, "repeat": repeat,
            "emulated_vs_cross": {"per_package": emu, "geomean": round(geomean(list(emu.values())), 2)},
            "cross_vs_native": {"per_package": nat, "geomean": round(geomean(list(nat.values())), 2)}}


def bench_layout(layout: Layout, tmp: Path) -> Layout:
    """A cache that shares toolchains, sources, build envs and locks, with its own ccache/work."""
    cache = tmp / "cache"
    cache.mkdir(parents=True)
    (layout.cache / "locks").mkdir(parents=True, exist_ok=True)
    for entry in layout.cache.iterdir():
        if entry.name not in ("ccache", "work", "bench"):
            (cache / entry.name).symlink_to(entry)
    return Layout(root=layout.root, cache=cache, dist=tmp / "dist")


def part_c(project: pipeline.Project, recipes: list[str], jobs: int, tmp: Path) -> tuple[dict, list]:
    layout = bench_layout(project.layout, tmp)
    bp = pipeline.Project(layout, project.targets, project.recipes)
    pairs = bp.matrix(recipes)
    quiet = lambda line: None  # noqa: E731

    def timed(**kw) -> tuple[float, list]:
        started = time.monotonic()
        results = pipeline.build_all(bp, pairs, say=quiet, jobs=jobs, **kw)
        return time.monotonic() - started, results

    cold_s, cold = timed()
    warm_s, warm = timed()
    ccache.zero_stats(layout.cache)
    forced_s, forced = timed(force=True)
    hits = ccache.stats(layout.cache)
    print("  " + pipeline.reuse_summary(warm, warm_s).replace("\n", "\n  "))
    out = {
        "builds": len(pairs), "jobs": jobs,
        "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 3), "forced_ccache_s": round(forced_s, 2),
        "warm_over_cold": round(warm_s / cold_s, 4), "forced_ccache_over_cold": round(forced_s / cold_s, 3),
        "cold_results": [b.record.result for b in cold], "warm_results": [b.record.result for b in warm],
        "forced_results": [b.record.result for b in forced],
        "ccache_hits": ccache.hits(hits), "ccache_misses": hits.get("cache_miss", 0),
    }
    return out, [(b.recipe, b.target, b.wheel) for b in cold if b.ok and b.wheel]


def part_d(project: pipeline.Project, wheels: list, tmp: Path) -> dict:
    rows = {}
    pip_cache = tmp / "pip-cache"
    old = os.environ.get("PIP_CACHE_DIR")
    os.environ["PIP_CACHE_DIR"] = str(pip_cache)  # a fresh pip cache: the "cold" run fills it
    try:
        for recipe, target, wheel in wheels:
            tc = get_toolchain(target, project.layout, recipe.target_libs)
            tc.ensure()
            cold = smoke_test(recipe, wheel, tc, cache=tmp / "smoke-cache")  # empty: deps, install, compile
            warm = smoke_test(recipe, wheel, tc, cache=tmp / "smoke-cache")
            rows[wheel.name] = {"cold_s": cold.duration_s, "warm_s": warm.duration_s,
                                "passed": cold.passed and warm.passed}
            print(f"  {wheel.name}: cold {cold.duration_s:.1f}s, warm {warm.duration_s:.1f}s, "
                  f"{'passed' if cold.passed and warm.passed else 'FAILED'}", flush=True)
    finally:
        if old is None:
            os.environ.pop("PIP_CACHE_DIR", None)
        else:
            os.environ["PIP_CACHE_DIR"] = old
    return rows


def _ratio(value: float | None) -> str:
    return f"{value}x" if value else "-"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [README_START, "",
             f"Measured {results['date']} with `{results['command']}` on: {m['nproc']} CPUs ({m['cpu']}), "
             f"{m['ram_gib']} GiB RAM, Linux {m['kernel']}, {m['qemu']}.", ""]
    ab = results.get("ab")
    if ab:
        lines += [f"### (a, b) one sdist, three ways ({ab['target']}; one compile job, no ccache; "
                  f"fastest of {ab.get('repeat', 1)} run(s))", "",
                  "| package | cross | emulated (qemu-arm gcc) | native x86-64 | emulated / cross | cross / native |",
                  "|---|---|---|---|---|---|"]
        for name, r in ab["rows"].items():
            def cell(k: str, r: dict = r) -> str:
                return f"{r[k]['seconds']:.1f} s" if k in r else "-"

            lines.append(f"| {name} | {cell('cross')} | {cell('emulated')} | {cell('native')} | "
                         f"{_ratio(r.get('emulated_vs_cross'))} | {_ratio(r.get('cross_vs_native'))} |"
                         + (f" error: {r['error']}" if "error" in r else ""))
        means = []
        if ab["emulated_vs_cross"]["geomean"]:
            means.append(f"emulated/cross **{ab['emulated_vs_cross']['geomean']}x** (cross is that much "
                         "faster than building under emulation)")
        if ab["cross_vs_native"]["geomean"]:
            means.append(f"cross/native **{ab['cross_vs_native']['geomean']}x** (how far the cross path is "
                         "from a native build of the same code on this host)")
        lines += ["", "Geometric means: " + "; ".join(means or ["-"]) + ".", ""]
    c = results.get("c")
    if c:
        lines += [f"### (c) the recipe set, cold vs warm ({c['builds']} builds, --jobs {c['jobs']})", "",
                  "| run | time | vs cold |", "|---|---|---|",
                  f"| cold: empty dist/, empty ccache | {c['cold_s']:.1f} s | 1 |",
                  f"| warm: unchanged recipes, all reused | {c['warm_s']:.2f} s | {c['warm_over_cold']} |",
                  f"| forced rebuild, warm ccache ({c['ccache_hits']} hits, {c['ccache_misses']} misses) | "
                  f"{c['forced_ccache_s']:.1f} s | {c['forced_ccache_over_cold']} |", ""]
    d = results.get("d")
    if d:
        lines += ["### (d) test-arm per wheel (install + smoke test under qemu-arm)", "",
                  "| wheel | cold (empty pip cache) | warm |", "|---|---|---|"]
        lines += [f"| {w} | {r['cold_s']:.1f} s | {r['warm_s']:.1f} s |" for w, r in d.items()]
        lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def write_readme(results: dict) -> None:
    readme = HERE / "README.md"
    text = readme.read_text() if readme.is_file() else f"# Benchmarks\n\n{README_START}\n{README_END}\n"
    block = markdown(results)
    if README_START in text and README_END in text:
        text = text[:text.index(README_START)] + block + text[text.index(README_END) + len(README_END):]
    else:
        text += "\n" + block + "\n"
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="every recipe (default: markupsafe, msgpack)")
    ap.add_argument("--recipes", nargs="*", help="these recipes")
    ap.add_argument("--target", default="bookworm-armhf", help="target of parts a and b")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c,d")
    ap.add_argument("--jobs", type=int, default=None, help="--jobs of part c (default: core count)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per side in parts a and b (the fastest counts)")
    ap.add_argument("--no-write", action="store_true", help="do not write results.json / README.md")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    project = pipeline.Project.load()
    recipes = sorted(project.recipes) if args.all else (args.recipes or QUICK)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                     "command": " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
                     "recipes": recipes}
    print(f"machine: {results['machine']}\nrecipes: {', '.join(recipes)}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ot2wheels-bench-"))
    try:
        if not {"a", "b"} <= skip:
            print(f"(a, b) cross vs emulated vs native builds on {args.target}:", flush=True)
            (tmp / "ab").mkdir()
            results["ab"] = part_ab(project, recipes, args.target, "a" not in skip, "b" not in skip, tmp / "ab",
                                     max(1, args.repeat))
            if results["ab"]["emulated_vs_cross"]["geomean"]:  # what `invoke report` takes as K
                results["emulated_vs_cross"] = results["ab"]["emulated_vs_cross"]
        wheels: list = []
        if "c" not in skip or "d" not in skip:
            print("(c) cold build of the recipe set, then warm (reused), then forced with a warm ccache:", flush=True)
            results["c"], wheels = part_c(project, recipes, args.jobs or pipeline.default_jobs(), tmp / "c")
            c = results["c"]
            print(f"  cold {c['cold_s']:.1f}s, warm {c['warm_s']:.2f}s (ratio {c['warm_over_cold']}), "
                  f"forced+ccache {c['forced_ccache_s']:.1f}s (ratio {c['forced_ccache_over_cold']})", flush=True)
        if "d" not in skip:
            print("(d) test-arm per wheel, cold and warm:", flush=True)
            results["d"] = part_d(project, wheels, tmp / "d")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + markdown(results).replace(README_START, "").replace(README_END, "").strip())
    if not args.no_write:
        (HERE / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
        write_readme(results)
        print(f"\nwrote {HERE / 'results.json'} and {HERE / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
