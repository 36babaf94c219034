"""Keep the build machine's include and library directories out of a cross build.

Some setup.py files add `/usr/include`, `/usr/lib/x86_64-linux-gnu` and the like on their own
(probing the machine they run on). Handed to the cross compiler, those host directories give
x86-64 headers to an ARM compile and x86-64 `.so` files to an ARM link ("file in wrong
format", or worse: a wrong-ABI header that compiles). Every build runs its compilers through a
small wrapper that rewrites such arguments to the same paths inside the sysroot (and drops
/usr/local ones, which a sysroot does not have), writing one note per rewrite to the log.

The wrapper also moves the sysroot's `-L` folders (LDFLAGS puts them first) behind the
command's own ones, so a library the build made itself wins over the sysroot's copy, as in a
native build; they stay in front of the cross compiler's default folders.

The same wrapper puts the target's C++ runtime flags (`Toolchain.cxx_runtime_flags`: the
suite's own libstdc++ headers) in front of every C++ compile: distutils compiles `.cpp` files
with CC, not CXX, so flags carried only by CXX would miss them.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import sys
from pathlib import Path

from .errors import ToolchainError
from .fsutil import atomic_write

# One wrapper per compiler, named like it (ccache and distutils guess the compiler's kind and
# find linker parameters by the name and position of that word). argv[1:] are its arguments.
_WRAPPER = r"""#!{python} -IS
# ot2wheels host guard for {real} (sha256 {digest}): host include/library paths -> the sysroot's
import os, re, sys
REAL = {real!r}
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
    if path.startswith(("/usr/include", "/usr/lib", "/lib/")) or path == "/lib":
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
# GNU ld searches the -L folders in command-line order for every -l: the sysroot's (from LDFLAGS,
# in front) would shadow a library the build made itself (PyNaCl's own libsodium.a lost to the
# sysroot's older libsodium.so). Move them behind the command's own -L folders, as in a native
# build; they stay in front of the compiler's defaults (its own newer glibc).
SYS_L = [n for n, a in enumerate(out) if a.startswith("-L" + SYSROOT + "/") or a == "-L" + SYSROOT]
OWN_L = [n for n, a in enumerate(out) if a.startswith("-L") and len(a) > 2 and n not in SYS_L]
if OWN_L and SYS_L and SYS_L[0] < OWN_L[-1]:
    early = [n for n in SYS_L if n < OWN_L[-1]]
    out = [*(a for n, a in enumerate(out[:OWN_L[-1] + 1]) if n not in early),
           *(out[n] for n in early), *out[OWN_L[-1] + 1:]]
{cxx_block}os.execv(REAL, [REAL, *out])
"""

# Only in wrappers of targets with C++ runtime flags: the others stay byte for byte what they
# were, so their ccache entries (keyed on the wrapper's content) stay valid.
_CXX_BLOCK = r"""CXX_FLAGS = {cxx_flags!r}
CXX_SOURCE = re.compile(r"\.(cc|cp|cxx|cpp|CPP|c\+\+|C|ii)$")
if "++" in os.path.basename(REAL) or "-xc++" in out or "c++" in out \
        or any(CXX_SOURCE.search(a) for a in out if not a.startswith("-")):
    out = [*CXX_FLAGS, *out]
"""

WRAPPED = ("CC", "CXX", "LDSHARED", "LDCXXSHARED")
_LAUNCHERS = {"ccache", "env"}


def write_wrapper(dest: Path, real: str, sysroot: Path, multiarch: str, cxx_flags: tuple[str, ...] = ()) -> Path:
    """The wrapper script at `dest` (executable) for the compiler `real` (a path)."""
    digest = hashlib.sha256(Path(real).read_bytes()).hexdigest()  # a new compiler is a new wrapper (ccache)
    atomic_write(dest, _WRAPPER.format(python=sys.executable, real=real, digest=digest, sysroot=str(sysroot),
                                       multiarch=multiarch, cxx_block=_CXX_BLOCK.format(cxx_flags=list(cxx_flags))
                                       if cxx_flags else ""), mode=0o755)
    return dest


def environment(env: dict[str, str], sysroot: Path, multiarch: str, work: Path,
                cxx_flags: tuple[str, ...] = ()) -> dict[str, str]:
    """`env` with the compiler word of CC, CXX, LDSHARED, LDCXXSHARED replaced by a guard of it
    (written into `work/hostguard/`); launchers (ccache) and flags stay where they were.
    `cxx_flags` go in front of every C++ compile (whichever variable ran it)."""
    out = dict(env)
    wrappers: dict[str, Path] = {}
    for var in WRAPPED:
        if not env.get(var):
            continue
        words = shlex.split(env[var])
        i = next((n for n, w in enumerate(words) if Path(w).name not in _LAUNCHERS and "=" not in w), None)
        if i is None:
            continue
        real = shutil.which(words[i])
        if real is None:
            raise ToolchainError(f"{var}: compiler {words[i]!r} not found on PATH")
        if real not in wrappers:
            wrappers[real] = write_wrapper(work / "hostguard" / Path(real).name, real, sysroot, multiarch,
                                           cxx_flags)
        words[i] = str(wrappers[real])
        out[var] = shlex.join(words)
    return out
