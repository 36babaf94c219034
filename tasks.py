"""Invoke tasks: toolchains, SDK, Docker images, the index, the CI matrix. Thin by design.

    invoke toolchain.setup --target bookworm-armhf
    invoke toolchain.info
    invoke report                     status page from the build ledger -> index/report/
    invoke bench                      cross vs emulated vs native, warm vs cold (bench/run.py)
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

from invoke import Collection, Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # run from this checkout whether installed or not

from ot2wheels.errors import Ot2WheelsError  # noqa: E402


def friendly(fn):
    """Turn our errors into a one-message exit 1 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Ot2WheelsError as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper


# --- toolchain ---------------------------------------------------------------------------
@task(iterable=["target"], help={"target": "target name (repeatable; default: the default targets)",
                                 "refresh": "re-read the suite's package lists first"})
@friendly
def toolchain_setup(c, target=None, refresh=False):
    """Install host tools and assemble the target sysroot(s), cached and verified."""
    from ot2wheels.pipeline import Project
    from ot2wheels.toolchains import get_toolchain

    project = Project.load()
    for t in project.targets.select(target or None):
        tc = get_toolchain(t, project.layout)
        tc.ensure(refresh=refresh)
        print(f"{t.name}: sysroot {tc.sysroot}\n  digest {tc.digest}\n  build python {tc.build_python()}")


@task(iterable=["target"])
@friendly
def toolchain_info(c, target=None):
    """Show each target's settings and whether its toolchain is ready."""
    from ot2wheels.pipeline import Project

    project = Project.load()
    for t in project.targets.select(target or list(project.targets.targets)):
        print(f"{t.name}: CPython {t.python} ({t.cp}), {t.platform}, glibc {t.glibc_str}, "
              f"{t.triplet}, provider {t.provider}\n  {t.description}")


toolchain = Collection("toolchain")
toolchain.add_task(toolchain_setup, "setup")
toolchain.add_task(toolchain_info, "info")

# --- report ------------------------------------------------------------------------------
@task(help={"ledger": "SQLite ledger (default: $OT2WHEELS_LEDGER or dist/ledger.sqlite)",
            "out": "output directory (default: index/report)",
            "factor": "robot native build time / cross build time (default: bench/results.json, else 10)"})
@friendly
def report(c, ledger=None, out=None, factor=None):
    """Render the build status page (HTML + JSON) from the ledger into index/report/."""
    from ot2wheels import ledger as ledger_mod
    from ot2wheels import report as report_mod
    from ot2wheels.paths import Layout

    layout = Layout.discover()
    led = ledger_mod.Ledger(Path(ledger) if ledger else ledger_mod.default_path(layout))
    rep = report_mod.build_report(led, Path(out) if out else layout.index / "report", layout.root,
                                  float(factor) if factor else None)
    t = rep.data["totals"]
    print(f"{rep.out_dir / 'index.html'}: {t['cells']} package x target cells "
          f"({t['passed']} passed, {t['reused']} reused, {t['failed']} failed); also report.json")
    print(f"robot build time saved per install of all: {rep.data['time_saved']['robot_build_s_per_install_of_all']:.0f} s "
          f"(K = {rep.data['time_saved']['factor']:g})")


# --- bench -------------------------------------------------------------------------------
@task(help={"all": "every recipe (default: markupsafe and msgpack)", "skip": "parts to skip: a,b,c,d"})
def bench(c, all=False, skip=""):
    """Benchmarks: cross vs emulated vs native builds, warm vs cold cache, smoke cold vs warm."""
    args = [sys.executable, str(ROOT / "bench" / "run.py")] + (["--all"] if all else []) + (
        ["--skip", skip] if skip else [])
    c.run(" ".join(args), pty=False)


ns = Collection()
ns.add_collection(toolchain)
ns.add_task(report)
ns.add_task(bench)
