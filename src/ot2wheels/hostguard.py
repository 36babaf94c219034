"""Keep the build machine's include and library directories out of a cross build.

Some setup.py files add `/usr/include`, `/usr/lib/x86_64-linux-gnu` and the like on their own
(probing the machine they run on). Handed to the cross compiler, those host directories give
x86-64 headers to an ARM compile and x86-64 `.so` files to an ARM link ("file in wrong
format", or worse: a wrong-ABI header that compiles). Every build runs its compilers through a
small wrapper that rewrites such arguments to the same paths inside the sysroot (and drops
/usr/local ones, which a sysroot does not have), writing one note per rewrite to the log.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .fsutil import atomic_write

# argv[1:] is the real command (ccache ... gcc ...). Paths are matched by prefix; the host's
# multiarch tuple (x86_64-linux-gnu, aarch64-linux-gnu, ...) becomes the target's.
_WRAPPER = r'''#!{python} -IS
"""ot2wheels host guard: host include/library paths -> the sysroot's (see ot2wheels.hostguard)."""
import os, re, sys
SYSROOT = {sysroot!r}
MULTIARCH = {multiarch!r}
TUPLE = re.compile(r"^(/usr/lib|/lib|/usr/include)/[a-z0-9_]+-linux-gnu[a-z0-9_]*(?=/|$)")

def moved(path):
    if path.startswith(SYSROOT) or not path.startswith(("/usr/", "/lib/", "/lib")):
        return path
    if path.startswith("/usr/local/"):
        return None
    m = TUPLE.match(path)
    if m:
        path = m.group(1) + "/" + MULTIARCH + path[m.end():]
    if path.startswith(("/usr/include", "/usr/lib", "/lib/")) or path in ("/lib",):
        return SYSROOT + path
    return path

out = []
for arg in sys.argv[1:]:
    new = arg
    for flag in ("-I", "-L", "-isystem"):
        if arg.startswith(flag + "/"):
            p = moved(arg[len(flag):])
            new = None if p is None else flag + p
            break
    else:
        if arg.startswith("/") and re.search(r"\.(so(\.[0-9.]+)?|a)$", arg):
            new = moved(arg)
    if new != arg:
        sys.stderr.write("ot2wheels-hostguard: host path %s -> %s\n" % (arg, new or "(dropped)"))
    if new is not None:
        out.append(new)
os.execvp(out[0], out)
'''

WRAPPED = ("CC", "CXX", "LDSHARED", "LDCXXSHARED")


def write_wrapper(dest: Path, sysroot: Path, multiarch: str) -> Path:
    """The wrapper script at `dest` (executable), for one sysroot."""
    atomic_write(dest, _WRAPPER.format(python=sys.executable, sysroot=str(sysroot), multiarch=multiarch),
                 mode=0o755)
    return dest


def environment(env: dict[str, str], sysroot: Path, multiarch: str, work: Path) -> dict[str, str]:
    """`env` with its compilers and linkers run through the host guard (written into `work`)."""
    wrapper = write_wrapper(work / "ot2wheels-hostguard", sysroot, multiarch)
    return {k: (f"{wrapper} {v}" if k in WRAPPED and v else v) for k, v in env.items()}
