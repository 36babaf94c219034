"""`python -m ot2wheels.index DIST INDEX --targets FILE`: build or update the index, print what happened.

`invoke index.build` runs the same `publish`. A no-op (nothing new in dist/) is answered by
quick.py before the index code, packaging or pathlib is imported: that is most of its cost.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # typing itself is not imported: this is on the fast path

if TYPE_CHECKING:
    from .build import IndexResult


def _summary(index_dir: str, wheels: int, projects: int, targets: list[str] | tuple[str, ...],
             state: str, seconds: float) -> str:
    return (f"{index_dir}: {wheels} wheel(s), {projects} project page(s), "
            f"targets {', '.join(targets) or '-'}; {state} in {seconds:.2f}s")


def print_result(r: IndexResult) -> None:
    # One write: a full build adds thousands of lines, and a print() each was ~2% of its time.
    state = f"{len(r.rewritten)} file(s) rewritten" if r.changed else "unchanged"
    sys.stdout.write("".join([
        *(f"not published: {line}\n" for line in r.skipped),
        *(f"warning: {rule} matches no published wheel\n" for rule in r.unused_yanks),
        *(f"added   {name}\n" for name in r.added),
        *(f"removed {name}\n" for name in r.removed),
        _summary(str(r.index_dir), r.wheels, r.projects, r.targets, state, r.seconds) + "\n",
    ]))


def publish(dist: str, index: str, targets_file: str, yanked: str | None = None, base_url: str | None = None,
            full: bool = False) -> None:
    """Build or update `index` from `dist` and print the result (errors: Ot2WheelsError)."""
    start = time.monotonic()
    listed = None
    if not full:
        from . import quick

        release = quick.lock(index)
        try:
            doc, listed = quick.probe(dist, index, quick.fingerprint(dist, yanked, base_url, targets_file))
        finally:
            release()
        # Unused yank rules are named from the yank list, which only the long way reads.
        if doc is not None and isinstance(doc.get("summary"), list) and not doc["summary"][3]:
            for folder in sorted(doc["folders"]):
                for line in doc["folders"][folder][1]:
                    print(f"not published: {line}")
            targets, projects, wheels, _unused = doc["summary"]
            import os

            print(_summary(os.path.abspath(index), wheels, projects, targets, "unchanged",
                           time.monotonic() - start))
            return
    from pathlib import Path

    from .build import build_index

    # The targets file is parsed by the full path only: an incremental one has what it needs in the scan file.
    print_result(build_index(Path(dist), Path(index), Path(yanked) if yanked else None, base_url,
                             targets=Path(targets_file), full=full, listed=listed))


_OPTIONS = ("--targets", "--yanked", "--base-url")


def _plain_args(argv: list[str]) -> tuple[str, str, str, str | None, str | None, bool] | None:
    """(dist, index, targets, yanked, base URL, full) of the plain form `DIST INDEX --targets F
    [--yanked F] [--base-url U] [--full]`, None for anything else (help, `--opt=value`, an
    abbreviation, a mistake): argparse parses those. Importing and setting up argparse costs
    ~8 ms, a tenth of publishing one wheel. Whatever this accepts, argparse reads alike."""
    values: dict[str, str] = {}
    positional: list[str] = []
    full = False
    it = iter(argv)
    for arg in it:
        if arg == "--full":
            full = True
        elif arg in _OPTIONS:
            value = next(it, None)
            if value is None or value.startswith("-"):
                return None
            values[arg] = value
        elif arg.startswith("-") or len(positional) == 2:
            return None
        else:
            positional.append(arg)
    if len(positional) != 2 or "--targets" not in values:
        return None
    return (positional[0], positional[1], values["--targets"], values.get("--yanked"), values.get("--base-url"),
            full)


def _parse_args(argv: list[str] | None) -> tuple[str, str, str, str | None, str | None, bool]:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ot2wheels.index", description=__doc__.splitlines()[0])
    ap.add_argument("dist", help="wheels to publish (dist/<target>/<project>/)")
    ap.add_argument("index", help="the index directory")
    ap.add_argument("--targets", required=True, help="the targets file (toolchain/targets.toml)")
    ap.add_argument("--yanked", help="the yank list (toolchain/yanked.toml)")
    ap.add_argument("--base-url", help="write absolute links under this URL (default: relative links)")
    ap.add_argument("--full", action="store_true", help="recompute every page and swap the whole tree")
    args = ap.parse_args(argv)
    return args.dist, args.index, args.targets, args.yanked, args.base_url, args.full


def main(argv: list[str] | None = None) -> int:
    args = _plain_args(sys.argv[1:] if argv is None else argv) or _parse_args(argv)
    import gc

    from ..errors import Ot2WheelsError

    # A build makes hundreds of thousands of small objects and few cycles: the cyclic collector's
    # passes over them were 5-8% of a full build's CPU time. The process is short-lived.
    collecting = gc.isenabled()
    gc.disable()
    try:
        publish(*args)
    except Ot2WheelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if collecting:
            gc.enable()
    return 0
