"""Index generation benchmark: ours vs simple503 and dumb-pypi on the same real wheels.

Makes N small but valid wheels (METADATA, WHEEL, RECORD with hashes; written by the `wheel`
library) spread over projects, then times, each as a fresh process on the same files:

  full         an index built from nothing
  +1           the same index rebuilt after one wheel was added
  +1 again     and after one more (the steady state: ours then reuses its spare tree)
  no-op        (ours) rebuilt again with nothing new

Before each timed run the file system is synced (untimed), so a step does not pay for writing
out the previous step's files.

Peers: simple503 (hashes, copies, extracts PEP 658 metadata: the same work as ours) and
dumb-pypi (given the list of filenames; it neither reads, hashes nor copies wheels, so it
does less work; its incremental mode takes the previous package list).

    python bench/index_bench.py [--wheels 3000] [--per-project 3] [--repeat 3] [--keep DIR]
    pip install simple503 dumb-pypi   # peers that are missing are reported and skipped
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ot2wheels.index.synth import write_record, write_wheel  # noqa: E402

TARGETS = ROOT / "toolchain" / "targets.toml"
TARGET = "bookworm-armhf"  # a target of toolchain/targets.toml: the index publishes no other


def make_wheels(dist: Path, count: int, per_project: int) -> list[Path]:
    wheels = []
    for i in range(count):
        project, version = f"bench-project-{i // per_project:05d}", f"1.{i % per_project}"
        tag = "cp311-cp311-linux_armv7l" if i % 2 else "py3-none-any"
        wheel = write_wheel(dist / TARGET / project, project, version, tag=tag,
                            requires_python=">=3.9", module_code="X = 1\n" * 20)
        write_record(wheel, TARGET)  # the passing build record the index requires
        wheels.append(wheel)
    return wheels


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    # Dirty pages of the previous step are written out first, untimed: ours fsyncs what it
    # publishes, and on ext4 (data=ordered) the first fsync after a full build would otherwise
    # also write out the full build's tens of thousands of files, which the kernel does in the
    # background within seconds when builds are not back to back. Every tool gets the same.
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def ours(dist: Path, out: Path) -> list[str]:
    # The command line `invoke index.build` runs too (ot2wheels.index.cli.publish).
    return [sys.executable, "-m", "ot2wheels.index", str(dist), str(out), "--targets", str(TARGETS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", type=int, default=3000)
    ap.add_argument("--per-project", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (the median is shown)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (e.g. on /dev/shm "
                    "to measure without disk noise)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="index-bench-"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # Byte-compile ours first, as an installed package is (pip compiles on install; the peers were):
    # with PYTHONDONTWRITEBYTECODE set, every run would otherwise compile our modules from source.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "ot2wheels")], check=True,
                   capture_output=True, env={k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"})
    dist = work / "dist"
    t = time.perf_counter()
    wheels = make_wheels(dist, args.wheels, args.per_project)
    size = sum(w.stat().st_size for w in wheels)
    print(f"made {len(wheels)} wheels ({size / 1e6:.1f} MB, {len({w.parent for w in wheels})} projects) "
          f"in {time.perf_counter() - t:.1f}s under {work}")
    extra_project = "bench-project-extra"

    def add_one(version: str) -> Path:
        wheel = write_wheel(dist / TARGET / extra_project, extra_project, version, requires_python=">=3.9")
        write_record(wheel, TARGET)
        return wheel

    tools: dict[str, Callable[[Path, Path | None], list[list[str]]]] = {"ours": lambda out, _old: [ours(dist, out)]}
    # Peers installed beside this interpreter (a venv's bin/ need not be on PATH).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    simple503 = shutil.which("simple503", path=path)
    if simple503:  # the same work as ours: hash, copy, PEP 658 metadata; origin keeps <project>/ folders
        tools["simple503"] = lambda out, _old: [[simple503, "--copy", "--extract-metadata", str(dist / TARGET), str(out)]]
    else:
        print("simple503 not installed: skipped (pip install simple503)")
    dumb = shutil.which("dumb-pypi", path=path)
    if dumb:  # filenames only; its incremental mode is given the previous list
        def dumb_argv(out: Path, old: Path | None) -> list[list[str]]:
            listing = out.parent / f"{out.name}.list"
            listing.write_text("\n".join(sorted(p.name for p in (dist / TARGET).glob("*/*.whl"))) + "\n")
            argv = [dumb, "--output-dir", str(out), "--packages-url", "../../files/", "--no-generate-timestamp",
                    "--no-per-release-json", "--package-list", str(listing)]
            return [argv + (["--previous-package-list", str(old)] if old else [])]
        tools["dumb-pypi"] = dumb_argv
    else:
        print("dumb-pypi not installed: skipped (pip install dumb-pypi)")

    kinds = ("full", "incremental", "again", "no-op")
    samples: dict[str, dict[str, list[float]]] = {t: {k: [] for k in kinds} for t in tools}
    for rnd in range(args.repeat):
        for tool, argv_of in tools.items():  # interleaved, so a noisy disk hits every tool alike
            out = work / f"{tool}-{rnd}"
            samples[tool]["full"].append(sum(timed(a, env) for a in argv_of(out, None)))
            for kind, version in (("incremental", "9.8"), ("again", "9.9")):
                previous = out.parent / f"{out.name}.prev"
                if (out.parent / f"{out.name}.list").exists():
                    shutil.copy(out.parent / f"{out.name}.list", previous)
                extra = add_one(version)
                samples[tool][kind].append(sum(timed(a, env) for a in argv_of(out, previous)))
            if tool == "ours":
                samples[tool]["no-op"].append(timed(ours(dist, out), env))
            shutil.rmtree(extra.parent)
            shutil.rmtree(out)
            for leftover in out.parent.glob(f".{out.name}.*"):  # our lock file and spare tree
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    results = {t: {k: statistics.median(v) for k, v in kinds.items() if v} for t, kinds in samples.items()}
    print(f"median of {args.repeat} run(s) each")
    print()
    print(f"{'tool':<11} {'full':>7} {'+1':>7} {'+1 again':>9} {'no-op':>7}   {'tool/ours: full':>15} {'+1':>6} {'+1 again':>9}")
    mine = results["ours"]
    for tool, r in results.items():
        noop = f"{r['no-op']:.2f}" if "no-op" in r else "-"
        print(f"{tool:<11} {r['full']:>7.2f} {r['incremental']:>7.2f} {r['again']:>9.2f} {noop:>7}   "
              f"{r['full'] / mine['full']:>14.2f}x {r['incremental'] / mine['incremental']:>5.2f}x "
              f"{r['again'] / mine['again']:>8.2f}x")
    if "dumb-pypi" in results:  # issue 12's yardstick: ours against dumb-pypi's add-one of the same files
        dumb = results["dumb-pypi"]
        print(f"\nours vs dumb-pypi's +1: +1 {mine['incremental'] / dumb['incremental']:.3f}x, "
              f"+1 again {mine['again'] / dumb['incremental']:.3f}x, no-op {mine['no-op'] / dumb['incremental']:.3f}x "
              f"(target < 0.1x); full vs dumb-pypi's full {mine['full'] / dumb['full']:.3f}x (target < 0.5x)")
    print("\nseconds, median; '+1': one wheel added after the full build; '+1 again': another one after that")
    print("(steady state: ours then updates its spare tree instead of writing a new one).")
    print("ratio > 1: the peer took longer than ours. dumb-pypi reads no wheels (no hashes, no metadata).")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
