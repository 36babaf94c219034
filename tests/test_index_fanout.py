"""fanout.py: work split over forked processes, results and errors as one process gives them."""

from __future__ import annotations

import os

import pytest

from ot2wheels.errors import IndexBuildError
from ot2wheels.index import fanout


def _pids_and_squares(part: list[int]) -> tuple[int, list[int]]:
    return os.getpid(), [i * i for i in part]


def test_parts_are_contiguous_and_cover_everything():
    items = list(range(10))
    split = fanout.parts(items, 3)
    assert [i for part in split for i in part] == items and len(split) == 3
    assert fanout.parts(items, 50) == [[i] for i in items]  # never more parts than items
    assert fanout.parts([], 4) == [[]]
    # None: one part per core, but not for a small list (a fork costs more than it saves)
    assert len(fanout.parts(items, None)) == 1
    many = list(range(fanout.MIN_PER_PART * 64))
    assert len(fanout.parts(many, None)) == min(fanout.cores(), 64)


def test_results_come_back_in_order_from_other_processes():
    split = fanout.parts(list(range(30)), 3)
    results = fanout.run(_pids_and_squares, split)
    assert [sq for _pid, part in results for sq in part] == [i * i for i in range(30)]
    pids = [pid for pid, _part in results]
    assert pids[0] == os.getpid() and len(set(pids)) == 3  # the first part here, the others forked


def _fail_on(bad: int):
    def work(part: list[int]) -> list[int]:
        if bad in part:
            raise IndexBuildError(f"item {bad} is broken")
        return part
    return work


@pytest.mark.parametrize("bad", [0, 5, 9])
def test_an_error_in_any_part_is_raised_as_itself(bad):
    with pytest.raises(IndexBuildError, match=f"item {bad} is broken"):
        fanout.run(_fail_on(bad), fanout.parts(list(range(10)), 3))


def test_the_first_parts_error_wins():
    def work(part: list[int]) -> list[int]:
        raise IndexBuildError(f"part starting at {part[0]}")
    with pytest.raises(IndexBuildError, match="part starting at 0"):
        fanout.run(work, fanout.parts(list(range(10)), 3))


@pytest.mark.parametrize("how", ["exit", "killed"])
def test_a_worker_that_dies_is_an_error_not_a_short_result(how):
    def work(part: list[int]) -> list[int]:
        if part[0] != 0:
            if how == "exit":
                os._exit(3)
            os.kill(os.getpid(), 9)  # out of memory...: killed
        return part
    with pytest.raises(IndexBuildError, match=r"died without a result \((exit status 3|signal 9)\); nothing"):
        fanout.run(work, fanout.parts(list(range(10)), 2))


def test_an_exception_that_does_not_pickle_comes_back_as_its_text():
    class Local(Exception):  # a local class cannot be pickled
        pass

    def work(part: list[int]) -> list[int]:
        if part[0] != 0:
            raise Local("no such wheel")
        return part
    with pytest.raises(RuntimeError, match="Local: no such wheel"):
        fanout.run(work, fanout.parts(list(range(10)), 2))


def test_no_worker_is_left_behind():
    with pytest.raises(IndexBuildError):
        fanout.run(_fail_on(0), fanout.parts(list(range(10)), 3))
    with pytest.raises(ChildProcessError):  # every child was waited for
        os.waitpid(-1, os.WNOHANG)


def test_no_fork_while_other_threads_run():
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert fanout.parts(list(range(10)), 3) == [list(range(10))]
    finally:
        stop.set()
        thread.join()
    assert len(fanout.parts(list(range(10)), 3)) == 3


# --- run_shared: items handed out one at a time to whichever process is free -----------------------
def test_runs_shrink_and_cover_everything():
    items = list(range(1000))
    runs = fanout.runs(items, 2)
    assert [i for run in runs for i in run] == items
    sizes = [len(run) for run in runs]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 128 and min(sizes[:-1]) >= 8
    assert [len(run) for run in fanout.runs(items, 2, largest=1000)][:2] == [250, 187]  # a quarter of what is left
    assert fanout.runs([], 2) == [] and fanout.runs([1, 2], 2) == [[1, 2]]
    huge = list(range(fanout.MAX_SHARED * 200))  # never more runs than run_shared takes
    assert len(fanout.runs(huge, 2)) <= fanout.MAX_SHARED and sum(map(len, fanout.runs(huge, 64))) == len(huge)
    with pytest.raises(ValueError, match="at most"):
        fanout.run_shared(abs, list(range(fanout.MAX_SHARED + 1)), 2)


def test_shared_items_are_each_done_once_in_order_by_every_process():
    import time

    def work(item: int) -> tuple[int, int]:
        time.sleep(0.002 if item % 3 else 0.01)  # uneven items
        return os.getpid(), item * item

    results = fanout.run_shared(work, list(range(40)), 3)
    assert [sq for _pid, sq in results] == [i * i for i in range(40)]
    assert len({pid for pid, _sq in results}) == 3  # every process took some


@pytest.mark.parametrize("bad", [[0], [5], [39], [7, 30]])
def test_shared_items_raise_the_first_failing_items_error(bad):
    def work(item: int) -> int:
        if item in bad:
            raise IndexBuildError(f"item {item} is broken")
        return item
    with pytest.raises(IndexBuildError, match=f"item {bad[0]} is broken"):
        fanout.run_shared(work, list(range(40)), 2)
    with pytest.raises(ChildProcessError):  # every child was waited for
        os.waitpid(-1, os.WNOHANG)


def test_a_shared_worker_that_dies_is_an_error():
    parent = os.getpid()

    def work(item: int) -> int:
        if os.getpid() != parent:
            os._exit(3)
        import time

        time.sleep(0.01)  # let the child take items too
        return item
    with pytest.raises(IndexBuildError, match=r"died without a result \(exit status 3\)"):
        fanout.run_shared(work, list(range(10)), 2)


def test_an_unpicklable_shared_error_comes_back_as_its_text():
    class Local(Exception):
        pass

    parent = os.getpid()

    def work(item: int) -> int:
        if os.getpid() != parent:
            raise Local(f"no such wheel {item}")
        import time

        time.sleep(0.01)  # let the child take items too
        return item
    with pytest.raises(RuntimeError, match="Local: no such wheel"):
        fanout.run_shared(work, list(range(10)), 2)
