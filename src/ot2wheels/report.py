"""A static status page (HTML + JSON) rendered from the build ledger.

Written to `index/report/` (index.html, report.json, logs/<target>/<log>): a page the published
index carries. The matrix shows the newest build of every package x target, coloured by status,
with durations, wheel sizes, the smoke test, a link to the build log and the failure reason.

Robot build time saved (after piwheels' "time saved" figure): every wheel built here is a build a
robot does not do. Assumption, stated on the page: compiling natively on the robot's CPU (a
Raspberry Pi 3, Cortex-A53 at 1.2 GHz) takes K times our cross build. K is the emulated/cross
ratio that `python bench/run.py` measured (qemu-arm running the armhf gcc on this build host,
a stand-in for the Pi's own speed), stored in bench/results.json; without that file K defaults
to DEFAULT_FACTOR, the upper end of the 5-10x emulated-vs-native figures cited in the project
issue. `--factor` overrides both.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from packaging.utils import canonicalize_name

from .errors import LedgerError
from .ledger import Ledger

DEFAULT_FACTOR = 10.0
# gcc/clang "file.c:3:1: error: ...", "fatal error:", "error: command 'gcc' failed", rustc "error[E0425]:"
ERROR_RE = re.compile(r"\b(fatal )?error(\[\w+\])?:", re.IGNORECASE)

STATUS_COLOURS = {
    "passed": "#2e9d4b",        # built and gated here
    "reused": "#7cc58f",        # same key as a passing build: not rebuilt
    "smoke-failed": "#e39b2d",  # built, but the qemu-arm smoke test failed
    "failed": "#d64541",
    "missing": "#c8c8c8",
}


@dataclass
class Factor:
    value: float
    source: str


@dataclass
class Report:
    data: dict
    html: str
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def bench_factor(bench_results: Path) -> Factor | None:
    """K from the benchmark's measured emulated/cross build ratio, if it has been run."""
    if not bench_results.is_file():
        return None
    try:
        data = json.loads(bench_results.read_text())
        value = float(data["emulated_vs_cross"]["geomean"])
    except (ValueError, KeyError, TypeError):
        return None
    if not value > 0:
        return None
    packages = ", ".join(sorted(data["emulated_vs_cross"].get("per_package", {})))
    return Factor(round(value, 2), f"measured by bench/run.py on {data.get('machine', {}).get('cpu', 'this host')}: "
                                   f"geometric mean of emulated (qemu-arm gcc) / cross build time ({packages})")


def choose_factor(root: Path, override: float | None = None) -> Factor:
    if override is not None:
        return Factor(override, "given on the command line (--factor)")
    return bench_factor(root / "bench" / "results.json") or Factor(
        DEFAULT_FACTOR, "default (no bench/results.json): emulated and Pi-class builds are reported 5-10x "
                        "slower than native ones; the upper end is used")


def _cell_status(build: dict | None, smoke: dict | None) -> str:
    if build is None:
        return "missing"
    if build["status"] == "failed":
        return "failed"
    if smoke is not None and smoke["status"] == "failed":
        return "smoke-failed"
    return build["status"]


def _current_smoke(build: dict | None, smoke: dict | None) -> dict | None:
    """The newest smoke test, only if it tested the wheel of the newest build: a smoke result of an
    older wheel says nothing about what the newest build produced."""
    if smoke is None or (build is not None and (build["status"] == "failed" or smoke["wheel"] != build["wheel"])):
        return None
    return smoke


def error_line(log: str | None, fallback: str | None) -> str:
    """The compiler's (or tool's) first `error:` line of a build log, else the first line of
    `fallback` (the record's error): what a reader needs, not a path."""
    if log:
        try:
            with open(log, errors="replace") as fh:
                for line in fh:
                    if ERROR_RE.search(line):
                        return line.strip()[:500]
        except OSError:
            pass
    lines = [ln for ln in (fallback or "").splitlines() if ln.strip()]
    return (lines[0] if lines else "failed")[:500]


def _reason(build: dict | None, smoke: dict | None, status: str) -> str:
    if status == "failed" and build:
        gate = json.loads(build.get("gate_json") or "{}")
        if gate and not gate.get("passed", True):
            return "; ".join(gate.get("reasons", []))[:500]
        return error_line(build.get("log_path"), build.get("error"))
    if status == "smoke-failed" and smoke:
        tail = [ln for ln in smoke["output"].splitlines() if ln.strip()]
        return ("smoke test: " + (tail[-1] if tail else "failed"))[:500]
    return ""


def collect(ledger: Ledger, factor: Factor) -> dict:
    """The report's data: one cell per (package, target) from the newest rows, plus totals."""
    builds = {(b["package"], b["target"]): b for b in ledger.latest_builds()}
    smokes = {(s["package"], s["target"]): s for s in ledger.latest_smokes()}
    # The newest passing build of each (package, target): what the index still serves when a
    # newer build failed (published wheels stay published).
    served: dict[tuple[str, str], dict] = {}
    for row in ledger.builds():
        if row["status"] in ("passed", "reused") and row["wheel"]:
            served[(row["package"], row["target"])] = row
    packages = sorted({p for p, _t in builds} | {p for p, _t in smokes})
    targets = sorted({t for _p, t in builds} | {t for _p, t in smokes})
    cells = []
    for pkg in packages:
        for tgt in targets:
            b = builds.get((pkg, tgt))
            s: dict | None = smokes.get((pkg, tgt))
            if b is None and s is None:
                continue
            s = _current_smoke(b, s) if b is not None else s
            status = _cell_status(b, s)
            still = served.get((pkg, tgt)) if status == "failed" else None
            cells.append({
                "package": pkg, "target": tgt,
                "version": (b or s or {}).get("version"), "python": (b or s or {}).get("python"),
                "status": status,
                "build_status": b["status"] if b else None,
                "smoke": s["status"] if s else None,
                "smoke_duration_s": s["duration_s"] if s else None,
                "duration_s": b["duration_s"] if b else None,
                "build_duration_s": b["build_duration_s"] if b else None,
                "wheel": b["wheel"] if b else None,
                "wheel_size": b["wheel_size"] if b else None,
                "wheel_sha256": b["wheel_sha256"] if b else None,
                "log_path": b["log_path"] if b else None,
                "log": None,  # relative link, filled in when the log is copied next to the page
                "reason": _reason(b, s, status),
                "still_served": still["version"] if still else None,
                "finished_at": b["finished_at"] if b else s["finished_at"],  # type: ignore[index]
            })
    ok = [c for c in cells if c["status"] in ("passed", "reused")]
    # A forced rebuild with a warm ccache is fast; robots compile from scratch: count the
    # slowest recorded cross build of each wheel.
    slowest = ledger.slowest_builds()
    for c in cells:
        c["from_scratch_s"] = max(c["build_duration_s"] or 0.0,
                                  slowest.get((c["package"], c["target"], c["version"]), 0.0)) or None
    # A robot runs one target: it is spared the builds of its own target's wheels, not the sum
    # over every target.
    per_target: dict[str, dict] = {}
    for c in ok:
        t = per_target.setdefault(c["target"], {"wheels": 0, "cross_build_s": 0.0})
        t["wheels"] += 1
        t["cross_build_s"] += c["from_scratch_s"] or 0.0
    for t in per_target.values():
        t["cross_build_s"] = round(t["cross_build_s"], 2)
        t["robot_build_s"] = round(t["cross_build_s"] * factor.value, 1)
    best = max(per_target.items(), key=lambda kv: kv[1]["robot_build_s"], default=(None, None))
    all_builds = ledger.builds()
    counts = {k: sum(1 for c in cells if c["status"] == k) for k in STATUS_COLOURS}
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ledger": str(ledger.path),
        "schema_version": ledger.version(),
        "packages": packages,
        "targets": targets,
        "cells": cells,
        "totals": {
            "cells": len(cells), **counts,
            "wheel_bytes": sum(c["wheel_size"] or 0 for c in ok),
            "ledger_builds": len(all_builds),
            "ledger_reused": sum(1 for b in all_builds if b["status"] == "reused"),
            "ledger_smokes": len(ledger.smokes()),
            "runs": len(ledger.runs()),
        },
        "time_saved": {
            "factor": factor.value,
            "factor_source": factor.source,
            "assumption": (f"a native build on the robot (Raspberry Pi 3 class CPU) takes {factor.value:g}x "
                           "our measured cross build time (per wheel, the slowest recorded cross build: "
                           "the one least helped by the compiler cache)"),
            "per_target": per_target,
            # the headline: one robot, the target that saves it the most
            "target": best[0],
            "cross_build_s": best[1]["cross_build_s"] if best[1] else 0.0,
            "robot_build_s_per_install_of_all": best[1]["robot_build_s"] if best[1] else 0.0,
            "wheels": best[1]["wheels"] if best[1] else 0,
        },
    }


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds >= 90:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _fmt_size(size: int | None) -> str:
    if not size:
        return ""
    return f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def render_html(data: dict) -> str:
    e = html.escape
    cells = {(c["package"], c["target"]): c for c in data["cells"]}
    head = "".join(f"<th>{e(t)}</th>" for t in data["targets"])
    rows = []
    for pkg in data["packages"]:
        tds = []
        for tgt in data["targets"]:
            c = cells.get((pkg, tgt))
            if c is None:
                tds.append('<td class="st-missing">&mdash;</td>')
                continue
            bits = [f'<b>{e(c["status"])}</b> {e(c["version"] or "")}']
            if c["build_duration_s"] is not None:
                bits.append(f'build {_fmt_s(c["build_duration_s"])}'
                            + (f' (reused in {_fmt_s(c["duration_s"])})' if c["status"] == "reused" else ""))
            if c["wheel_size"]:
                bits.append(f'<span title="{e(c["wheel"] or "")}">{_fmt_size(c["wheel_size"])}</span>')
            if c["smoke"]:
                bits.append(f'smoke {e(c["smoke"])} ({_fmt_s(c["smoke_duration_s"])})')
            if c["log"]:
                bits.append(f'<a href="{e(c["log"])}">log</a>')
            if c["reason"]:
                bits.append(f'<span class="reason">{e(c["reason"])}</span>')
            if c["still_served"]:
                bits.append(f'<b>still served: {e(c["still_served"])}</b> (the newest build failed)')
            tds.append(f'<td class="st-{e(c["status"])}">' + "<br>".join(bits) + "</td>")
        # the project's page in the index (index/project/<name>/), which links back here
        rows.append(f'<tr><th><a href="../project/{e(quote(canonicalize_name(pkg), safe=""))}/">{e(pkg)}</a></th>'
                    f"{''.join(tds)}</tr>")
    ts, tot = data["time_saved"], data["totals"]
    legend = " ".join(f'<span class="st-{k} key">{k}</span>' for k in STATUS_COLOURS)
    styles = "\n".join(f".st-{k} {{ background: {v}; }}" for k, v in STATUS_COLOURS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ot2wheels build status</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #888; padding: .4em .6em; vertical-align: top; font-size: 90%; }}
td a {{ color: #000; }}
.reason {{ display: block; max-width: 32em; font-family: monospace; white-space: pre-wrap; }}
.key {{ padding: .1em .5em; }}
{styles}
</style></head><body>
<h1>ot2wheels build status</h1>
<p>Generated {e(data["generated_at"])} from the build ledger (schema v{data["schema_version"]}):
{tot["ledger_builds"]} builds ({tot["ledger_reused"]} reused from the cache) and {tot["ledger_smokes"]}
smoke tests in {tot["runs"]} runs. Newest result per package and target:
{tot["passed"]} passed, {tot["reused"]} reused, {tot["smoke-failed"]} smoke-failed, {tot["failed"]} failed;
{_fmt_size(tot["wheel_bytes"])} of wheels.</p>
<p>{legend}</p>
<table id="matrix"><tr><th>package</th>{head}</tr>
{chr(10).join(rows)}
</table>
<h2>Robot build time saved</h2>
<p id="time-saved">A robot runs one target. Installing the {ts["wheels"]} wheels of {e(ts["target"] or "-")}
on such a robot instead of compiling them there saves about
<b>{_fmt_s(ts["robot_build_s_per_install_of_all"])}</b> of robot build time per robot
(cross builds here: {_fmt_s(ts["cross_build_s"])}). Per target:
{", ".join(f'{e(t)}: {_fmt_s(v["robot_build_s"])} ({v["wheels"]} wheels)' for t, v in sorted(ts["per_target"].items()))}.</p>
<p>Assumption: {e(ts["assumption"])}. K = {ts["factor"]:g}: {e(ts["factor_source"])}.</p>
<p><a href="report.json">report.json</a> holds the same data.</p>
{f'<p id="coverage"><a href="{e(data["coverage"])}">Coverage of generated recipes</a> (invoke survey).</p>'
 if data.get("coverage") else ""}
</body></html>
"""


def build_report(ledger: Ledger, out_dir: Path, root: Path, factor: float | None = None) -> Report:
    """Render the page into `out_dir` (replaced as a whole: built beside it, then renamed)."""
    if not ledger.path.is_file():
        raise LedgerError(f"no ledger at {ledger.path}; build something first (nox -s build)")
    data = collect(ledger, choose_factor(root, factor))
    if (out_dir.parent / "coverage" / "index.html").is_file():  # written by `invoke survey`
        data["coverage"] = "../coverage/index.html"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for c in data["cells"]:
            src = Path(c["log_path"]) if c["log_path"] else None
            if src and src.is_file():
                rel = Path("logs") / c["target"] / src.name
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)
                c["log"] = rel.as_posix()
        page = render_html(data)
        (tmp / "report.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        (tmp / "index.html").write_text(page)
        os.chmod(tmp, 0o755)
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    return Report(data, page, out_dir, files)
