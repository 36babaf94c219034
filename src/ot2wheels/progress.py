"""A live status line for long commands: the current step and the time elapsed.

On a terminal (and not under CI=true) a rich status line stays at the bottom, updated every
second, while the step lines scroll above it. Elsewhere (a pipe, a CI log) each step is one plain
line with the elapsed time, so logs stay readable and greppable.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

Step = Callable[[str], None]


def live_wanted(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    stream = sys.stdout if stream is None else stream
    return stream.isatty() and env.get("CI", "").lower() not in ("1", "true", "yes")


@contextmanager
def status(title: str, *, stream: TextIO | None = None, env: Mapping[str, str] | None = None,
           live: bool | None = None) -> Iterator[Step]:
    """Yields `step(text)`: shows `text` as the current step of `title` (and prints it as a line)."""
    stream = sys.stdout if stream is None else stream
    started = time.monotonic()
    if not (live_wanted(stream, env) if live is None else live):
        def plain(text: str) -> None:
            print(f"[{time.monotonic() - started:7.1f}s] {text}", file=stream, flush=True)

        yield plain
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=stream, force_terminal=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, refresh_per_second=2) as bar:
        task = bar.add_task(title, total=None)

        def step(text: str) -> None:
            bar.console.print(text, markup=False, highlight=False)
            bar.update(task, description=escape(f"{title}: {text.splitlines()[0][:100] if text else ''}"))

        yield step
