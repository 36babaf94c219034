"""Cross vs emulated time for single compile units of numpy and pandas (a measured fraction).

A whole emulated numpy or pandas build (meson + ninja, or setup.py + Cython, every compiler
process under qemu-arm) takes hours on 2 cores; this measures real translation units of their
sdists instead, compiled with the same flags by the cross gcc and by Debian's armhf gcc under
qemu-arm (bench/sides.py's emulated toolchain), and scales the measured whole cross build by
the ratio. Run:

    python bench/units.py [--target bookworm-armhf]

and it prints a markdown table (copied into bench/README.md by hand).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import sides  # noqa: E402

from ot2wheels import archive, sources  # noqa: E402
from ot2wheels.pipeline import Project  # noqa: E402
from ot2wheels.toolchains import get_toolchain  # noqa: E402

# (recipe, path in the sdist, extra include dirs relative to the sdist's file, flags)
UNITS = [
    ("numpy", "numpy/linalg/lapack_lite/f2c_blas.c", ["../../core/src/common"], "-O3 -fPIC -fno-strict-aliasing"),
    ("pandas", "pandas/_libs/src/parser/tokenizer.c", [".", "../klib"], "-O2 -fPIC -fwrapv -DNDEBUG"),
]


def timed(cmd: str) -> float:
    started = time.monotonic()
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{cmd}\n{out.stderr[-2000:]}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="bookworm-armhf")
    args = ap.parse_args(argv)
    project = Project.load()
    target = project.targets.get(args.target)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ot2wheels-units-") as tmp:
        for name, rel, incs, flags in UNITS:
            recipe = project.recipe(name)
            tree = sources.extract(sources.fetch_source(recipe, project.layout.cache), Path(tmp) / name)
            src = tree / rel
            cross_tc = get_toolchain(target, project.layout, recipe.target_libs)
            cross_tc.ensure()
            emu_tc = sides.emulated_toolchain(recipe, target, project.layout)
            wrappers = sides.wrappers(emu_tc, project.layout.cache / "bench" / "qemu-wrappers" / emu_tc.sysroot.name)
            include = " ".join(f"-I{src.parent / i}" for i in incs)
            if name == "numpy":  # numpy's C needs its generated _numpyconfig.h: our target wheel's
                wheel = next((project.layout.dist / target.name / "numpy").glob("numpy-*.whl"), None)
                if wheel is None:
                    raise SystemExit(f"build numpy for {target.name} first (nox -s build-numpy)")
                site = archive.extract(wheel, Path(tmp) / "numpy-wheel")
                include += f" -I{site / 'numpy' / 'core' / 'include'}"
            common = f"{flags} -I{{s}}/usr/include/python{target.python} {include} -c {shlex.quote(str(src))}"
            cross = f"{cross_tc.compilers()['CC']} {common.format(s=cross_tc.sysroot)} -o {tmp}/cross.o"
            emulated = f"{wrappers}/gcc {common.format(s=emu_tc.sysroot)} -o {tmp}/emu.o"
            c, e = timed(cross), timed(emulated)
            rows.append({"recipe": name, "unit": rel, "bytes": src.stat().st_size, "flags": flags,
                         "cross_s": round(c, 2), "emulated_s": round(e, 2), "ratio": round(e / c, 2)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| package | compile unit | size | cross | emulated (qemu-arm gcc) | emulated / cross |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['recipe']} | `{r['unit']}` ({r['flags']}) | {r['bytes'] // 1024} KiB | {r['cross_s']:.1f}s "
              f"| {r['emulated_s']:.1f}s | {r['ratio']:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
