"""A full index build's per-wheel and per-file work, split over forked processes.

A full build of a large index is interpreter work per wheel (read, hash, unzip METADATA, check)
and kernel work per file (tens of thousands created): on one core it took ~1.3 s for 10,000
wheels. Threads made it slower (2.6 s on 2 idle cores: the GIL's hand-offs cost more system
time than they overlapped), so the work is split over processes instead. `run`: the list is cut
into contiguous parts, each part but the first runs in a forked child, the first in this
process, and the results come back pickled, in input order. `run_shared`: the items are handed
out one at a time to whichever process is free (for uneven items). Either way an error is
raised as one process going through the items in order would raise it: the first one's.

Only in a process without other threads (the index build starts none; called from a threaded
program it runs in one process): fork is what makes this cheap (the children inherit the
plan, the entries and the targets without pickling them) and what would be unsafe with threads
running.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SIGKILL = 9  # signal.SIGKILL on Linux, where fork is used; the signal module is not imported for it

# Below this many items a part is not worth a process (a fork of the builder costs ~2-5 ms).
MIN_PER_PART = 256


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parts(items: Sequence[T], workers: int | None) -> list[list[T]]:
    """`items` cut into contiguous parts: `workers` of them (None: one per core, each part of at
    least MIN_PER_PART items); one part when processes cannot be forked safely here (no fork, or
    other threads running: an index build called from a threaded program runs in one process)."""
    if workers is None:
        workers = min(cores(), len(items) // MIN_PER_PART)
    threading = sys.modules.get("threading")  # not imported: no thread was started through it
    if not hasattr(os, "fork") or (threading is not None and threading.active_count() > 1):
        workers = 1  # a fork while another thread holds a lock (an import's, a stream's) can hang the child
    n = max(1, min(workers, len(items)))
    size = -(-len(items) // n) if items else 1
    return [list(items[i:i + size]) for i in range(0, len(items), size)] or [[]]


def run(fn: Callable[[list[T]], R], split: list[list[T]]) -> list[R]:
    """[fn(part) for part in split], the parts after the first in forked children."""
    if len(split) <= 1:
        return [fn(part) for part in split]

    children: list[tuple[int, int]] = []
    try:
        for part in split[1:]:
            children.append(_spawn(fn, part))
        results = [fn(split[0])]
        while children:
            results.append(_collect(*children.pop(0)))
        return results
    finally:  # an error in this process or in a part: the other children are not waited for
        for pid, fd in children:
            os.close(fd)
            try:
                os.kill(pid, _SIGKILL)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def runs(items: Sequence[T], workers: int, smallest: int = 8, largest: int = 128) -> list[list[T]]:
    """`items` cut into contiguous runs for run_shared that shrink towards the end (each a
    2*workers-th of what is left, at least `smallest`, at most `largest`), so that the processes
    finish close together. `largest` bounds what a worker holds at once (each page of memory a
    process touches first costs a fault, and a fork's pages are copied when first written).
    Never more runs than run_shared takes: longer ones for a huge list."""
    while True:
        out, start = [], 0
        while start < len(items):
            size = max(smallest, min(largest, (len(items) - start) // (2 * max(1, workers))))
            out.append(list(items[start:start + size]))
            start += size
        if len(out) <= MAX_SHARED:
            return out
        smallest, largest = smallest * 2, largest * 2


def run_shared(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """[fn(item) for item in items], each item done by whichever of `workers` processes (this one
    and forked children, as `run`) is free next, so that uneven items (a project with a hundred
    wheels among ones with three) do not leave a core idle at the end. The error raised is that of
    the first item that failed, as one process going through them in order would raise it."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    if len(items) > MAX_SHARED:
        raise ValueError(f"run_shared takes at most {MAX_SHARED} items, got {len(items)} (see runs())")
    # Each item's index, two bytes, in a pipe every process reads from: a read of two bytes takes
    # the next index, atomically (the pipe holds them all before the first fork, and no writer is
    # left: an empty pipe reads as its end).
    take_fd, put_fd = os.pipe()
    try:
        os.write(put_fd, b"".join(i.to_bytes(2, "big") for i in range(len(items))))
    finally:
        os.close(put_fd)

    parent = os.getpid()

    def work(_none: list[None]) -> list[Any]:
        done: list[Any] = []
        while index := os.read(take_fd, 2):
            i = int.from_bytes(index, "big")
            try:
                result = (i, True, fn(items[i]))
            except Exception as exc:  # this process stops; the others go on, the first item's error wins
                done.append((i, False, _sendable(exc)))
                break
            if os.getpid() != parent:  # a child pickles each result as it goes: at the end, only sending is left
                import pickle

                done.append(pickle.dumps(result, pickle.HIGHEST_PROTOCOL))
            else:
                done.append(result)
        return done

    import pickle

    try:
        done = sorted((d if isinstance(d, tuple) else pickle.loads(d) for part in run(work, [[None]] * workers)
                       for d in part), key=lambda d: d[0])
    finally:
        os.close(take_fd)
    for _i, ok, value in done:
        if not ok:
            raise value
    if len(done) != len(items):  # (cannot happen: every index was read by a process that reported)
        raise RuntimeError(f"run_shared: {len(items) - len(done)} item(s) not done")
    return [value for _i, _ok, value in done]


# Indexes go through the pipe as two bytes each, all written before any is read: within the
# smallest buffer a pipe gets (one page, when the user's pipe buffers are over their soft limit).
MAX_SHARED = 2048


def _sendable(exc: BaseException) -> BaseException:
    """`exc`, or its text as a RuntimeError if it cannot be pickled back to the parent."""
    import pickle  # (imported only where processes are forked: publishing one wheel forks none)

    try:
        pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _spawn(fn: Callable[[list[T]], R], part: list[T]) -> tuple[int, int]:
    import pickle

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, read_fd
    # The child: no return, no exception and no exit handler may run the parent's code below
    # this frame (its locks, its `finally` blocks, its buffered output): os._exit, always.
    try:
        os.close(read_fd)
        try:
            payload = pickle.dumps((True, fn(part)), pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # every error goes to the parent
            payload = pickle.dumps((False, _sendable(exc)), pickle.HIGHEST_PROTOCOL)
        with open(write_fd, "wb") as out:
            out.write(payload)
    finally:
        os._exit(0)


def _collect(pid: int, fd: int) -> Any:
    import pickle

    chunks = []
    try:
        with open(fd, "rb") as inp:
            while chunk := inp.read(1 << 20):
                chunks.append(chunk)
    except BaseException:  # interrupted: the child may be blocked writing to us
        os.kill(pid, _SIGKILL)
        os.waitpid(pid, 0)
        raise
    # Unpickled before the child is reaped: its exit (unmapping its memory) overlaps with this.
    try:
        ok, value = pickle.loads(b"".join(chunks))
    except Exception:  # cut short: the child died while sending it
        ok, value = None, None
    _pid, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or ok is None:  # killed (out of memory...) before or while sending its result
        from ..errors import IndexBuildError

        raise IndexBuildError(f"an index build worker process (pid {pid}) died without a result "
                              f"({f'signal {-code}' if code < 0 else f'exit status {code}'}); "
                              "nothing was published, run the build again")
    if not ok:
        raise value
    return value
