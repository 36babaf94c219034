"""A moved (or copied) cache: derived files naming the old path are made again for the new one."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ot2wheels import buildenv, crossenv, locks
from ot2wheels.pipeline import Project
from ot2wheels.toolchains.debian import DebianToolchain

SYSCONFIG = """build_time_vars = {'INCLUDEPY': '/usr/include/python3.11',
 'LIBDIR': '/usr/lib/arm-linux-gnueabihf',
 'CFLAGS': '-I/usr/include/python3.11 -O2',
}
"""


def test_moved_sysroot_sysconfigdata_is_detected_and_rewritten(tmp_path: Path) -> None:
    a = tmp_path / "a" / "sysroot"
    libdir = a / "usr" / "lib" / "python3.11"
    libdir.mkdir(parents=True)
    (libdir / "_sysconfigdata__linux_arm-linux-gnueabihf.py").write_text(SYSCONFIG)
    crossenv.write_sysconfigdata(a, "3.11", a / ".ot2wheels" / "sysconfig", "arm-linux-gnueabihf")
    assert not crossenv.sysconfigdata_moved(a, a / ".ot2wheels" / "sysconfig")
    b = tmp_path / "b" / "sysroot"
    b.parent.mkdir()
    a.rename(b)
    copy = b / ".ot2wheels" / "sysconfig" / "_sysconfigdata__linux_arm-linux-gnueabihf.py"
    assert str(a) in copy.read_text()
    assert crossenv.sysconfigdata_moved(b, b / ".ot2wheels" / "sysconfig")
    crossenv.write_sysconfigdata(b, "3.11", b / ".ot2wheels" / "sysconfig", "arm-linux-gnueabihf")
    assert str(a) not in copy.read_text() and f"'-I{b}/usr/include/python3.11 -O2'" in copy.read_text()
    assert not crossenv.sysconfigdata_moved(b, b / ".ot2wheels" / "sysconfig")


@pytest.mark.integration
def test_moved_cache_sysroot_builds_use_the_new_path(fresh_project: Project, tmp_path: Path) -> None:
    """A copy of the real bookworm-armhf sysroot (hard links: cheap) in another cache: ensure()
    says it rewrote the sysconfigdata, and the cross environment reads the new path."""
    shared = fresh_project.layout.cache
    target = fresh_project.targets.get("bookworm-armhf")
    DebianToolchain(target, fresh_project.layout).ensure(log=lambda s: None)  # the sysroot exists in the shared cache
    cache = tmp_path / "moved"
    cache.mkdir()
    with locks.cache_lock(shared, f"apt-{target.name}"):
        subprocess.run(["cp", "-a", str(shared / "apt"), str(cache / "apt")], check=True)
    tc = DebianToolchain(target, dataclasses.replace(fresh_project.layout, cache=cache))
    debs = tc.plan()
    old = DebianToolchain(target, fresh_project.layout)
    old.ensure(log=lambda s: None)
    (cache / "sysroots").mkdir()
    subprocess.run(["cp", "-al", str(old.sysroot), str(cache / "sysroots" / old.sysroot.name)], check=True)
    said: list[str] = []
    tc.ensure(log=said.append)
    assert debs and tc.sysroot == cache / "sysroots" / old.sysroot.name
    assert any("the cache was moved or copied" in s for s in said), said
    env = {**os.environ, **tc.env()}
    probe = subprocess.run([str(tc.build_python()), "-c",
                            "import sysconfig; print(sysconfig.get_config_var('INCLUDEPY'))"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == f"{tc.sysroot}/usr/include/python{target.python}"
    # the shared original is untouched (the rewrite replaced the copy's hard link)
    assert not crossenv.sysconfigdata_moved(old.sysroot, old.sysconfig_dir())


@pytest.mark.integration
def test_moved_cache_build_env_is_made_again(tmp_path: Path) -> None:
    python = Path(sys.executable)
    log = tmp_path / "build.log"
    first = buildenv.ensure_build_env(python, (), tmp_path / "a", log)
    script = first.parent / "pyproject-build"
    assert script.read_text().startswith(f"#!{first.parent}/python")  # made in place
    (tmp_path / "a").rename(tmp_path / "b")
    again = buildenv.ensure_build_env(python, (), tmp_path / "b", log)
    assert again.parent.parent.parent.parent == tmp_path / "b"
    assert "was made at" in log.read_text() and "making it again here" in log.read_text()
    assert (again.parent / "pyproject-build").read_text().startswith(f"#!{again.parent}/python")
    assert subprocess.run([str(again), "-m", "build", "--version"], capture_output=True).returncode == 0
