"""Make small, valid wheels quickly (for tests, benchmarks and install rehearsals).

The wheel holds one module, METADATA, WHEEL and a RECORD with every file's hash, written by
the `wheel` library's WheelFile, so pip, uv and `wheel unpack` accept it.
"""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from wheel.wheelfile import WheelFile


def write_wheel(
    out_dir: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    requires_python: str | None = None,
    requires: tuple[str, ...] = (),
    module_code: str = "",
    build: str | None = None,
) -> Path:
    """Write `<name>-<version>[-<build>]-<tag>.whl` into out_dir; returns its path.

    The wheel installs a module named after the project (dashes and dots as underscores)
    whose `VERSION` is `version`, plus `module_code`.
    """
    dist = canonicalize_name(name).replace("-", "_")
    stem = f"{dist}-{version}" + (f"-{build}" if build else "")
    path = Path(out_dir) / f"{stem}-{tag}.whl"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    py, abi, plat = tag.split("-")
    wheel_lines = ["Wheel-Version: 1.0", "Generator: ot2wheels.synth",
                   f"Root-Is-Purelib: {'true' if plat == 'any' else 'false'}"]
    wheel_lines += [f"Tag: {p}-{a}-{pl}" for p in py.split(".") for a in abi.split(".") for pl in plat.split(".")]
    if build:
        wheel_lines.append(f"Build: {build}")
    info = f"{dist}-{version}.dist-info"
    with WheelFile(path, "w") as wf:
        wf.writestr(f"{dist}.py", f"VERSION = {version!r}\n{module_code}")
        wf.writestr(f"{info}/METADATA", "\n".join(meta) + "\n\n")
        wf.writestr(f"{info}/WHEEL", "\n".join(wheel_lines) + "\n")
    return path


def write_record(wheel: Path, target: str, *, result: str = "passed", smoke_passed: bool | None = True) -> Path:
    """Write the build record `ot2wheels.records` would leave beside `wheel` after a passing build
    and smoke test (the index publishes only wheels such a record names); returns its path."""
    import hashlib

    from ..gate import GateReport
    from ..records import BuildRecord, Outcome, SmokeSummary, write_atomic

    name, version, _b, tags = parse_wheel_filename(wheel.name)
    cp = next(iter(tags)).interpreter
    rec = BuildRecord(target=target, python="", project=str(name), version=str(version), result=Outcome(result),
                      cache_key="", recipe_digest="", toolchain_digest="", duration_s=0.0, log="",
                      wheel=wheel.name, wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                      wheel_size=wheel.stat().st_size, gate=GateReport(wheel.name, True, [], []),
                      smoke=None if smoke_passed is None else SmokeSummary(smoke_passed, 0.0))
    path = wheel.with_name(f"{name}-{version}-{cp}.json")
    write_atomic(path, rec.to_json())
    return path
