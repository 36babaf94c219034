"""The install instructions the landing page prints for a target, as data.

Every command installs only wheels: `--only-binary=:all:` makes pip ignore sdists altogether
(old pip 21/22 and current pip alike), so a newer sdist on PyPI can never win over our older
wheel and start a compile on a device without a compiler. `--prefer-binary` is not enough: it
only prefers a wheel among candidates, and pip still builds the sdist when it is the only
candidate of the newest version that satisfies the constraints. The constraints file pins every
project to the version built here, so pip does not pick a newer wheel from PyPI either.

`tests/test_index_rehearsal.py` runs each command of `for_target` as the landing page prints it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .model import TargetInfo

UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")  # RFC 3986 unreserved: never quoted, nor escaped in HTML
PLACEHOLDER = "PROJECT"  # what the user replaces with the project to install
VENV = "~/ot2wheels-venv"


class Instruction(NamedTuple):
    """One way to install from the index, as the landing page prints it."""

    kind: str  # install | venv | pip-config | offline-download | offline-install
    intro: str  # the sentence above the block (HTML)
    text: str  # the command lines (plain text; PLACEHOLDER where the project goes)


def url_quote(part: str, safe: str = "/") -> str:
    """urllib.parse.quote(part, safe), which leaves letters, digits and `._~-` as they are:
    urllib.parse (it imports ipaddress, ~1.5 ms of an add-one) is imported only for other text."""
    if UNRESERVED.fullmatch(part):
        return part
    from urllib.parse import quote

    return quote(part, safe=safe)


def urls(t: TargetInfo, base: str) -> tuple[str, str]:
    """The target's simple index URL and constraints file URL under `base`."""
    root = f"{base.rstrip('/')}/{url_quote(t.name, safe='')}"
    return f"{root}/simple/", f"{root}/constraints.txt"


def for_target(t: TargetInfo, base: str) -> list[Instruction]:
    simple, constraints = urls(t, base)
    buildroot = t.provider == "buildroot-sdk"
    # On a Buildroot device (the OT-2) /usr is read-only: user packages go to the target's site.
    target_opt = ""
    if buildroot and t.site:
        import shlex

        target_opt = f" --target {shlex.quote(t.site)}"
    install = (f"python3 -m pip install --only-binary=:all: --extra-index-url {simple} "
               f"-c {constraints}{target_opt} {PLACEHOLDER}")
    out = []
    if not buildroot:
        out.append(Instruction(
            "venv",
            "Debian 12 (bookworm) and Raspberry Pi OS mark the system Python <code>EXTERNALLY-MANAGED</code>: "
            "pip refuses to install into it. Install into a virtual environment instead (needs the "
            "<code>python3-venv</code> package: <code>sudo apt install python3-venv</code>):",
            f"python3 -m venv {VENV}\n. {VENV}/bin/activate\n{install}"))
    out.append(Instruction(
        "install",
        "Install a package (in a virtual environment, or on a Python that is not externally managed). "
        "Only wheels: pip never falls back to building an sdist, and the constraints pin the versions "
        "built and tested here:",
        install))
    out.append(Instruction(
        "pip-config",
        "Or once for every pip call (your user's <code>pip.conf</code>). This keeps an "
        "<code>extra-index-url</code> your configuration already has (Raspberry Pi OS's "
        "<code>/etc/pip.conf</code> lists another index there) and adds ours to the same line: pip refuses "
        "a second <code>extra-index-url</code> line. Afterwards <code>python3 -m pip install "
        f"-c {constraints} PROJECT</code> is enough:",
        # `pip config list` shows the value in effect (from /etc/pip.conf or the user's file);
        # `pip config get` without --global/--user only reads the user's file.
        "python3 -m pip config --user set global.extra-index-url "
        f"\"$(python3 -m pip config list | sed -n \"s/^global.extra-index-url='\\(.*\\)'$/\\1/p\") {simple}\"\n"
        f"python3 -m pip config --user set global.only-binary :all:\n"
        f"python3 -m pip install -c {constraints}{target_opt} {PLACEHOLDER}"))
    if t.pip_target_args:
        out.append(Instruction(
            "offline-download",
            "For a device without network: download the wheels on another machine (any OS, pip 21 or "
            "newer; the options select every platform tag this target accepts)...",
            f"python3 -m pip download {' '.join(t.pip_target_args)} --extra-index-url {simple} "
            f"-c {constraints} -d wheels/ {PLACEHOLDER}"))
        out.append(Instruction(
            "offline-install",
            "...copy the <code>wheels/</code> folder over, then on the device:",
            f"python3 -m pip install --no-index --find-links wheels/{target_opt} {PLACEHOLDER}"))
    return out
