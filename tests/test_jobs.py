"""filtertopo.jobs.map_jobs: one runner for in-process loops, its own pool and any executor."""

import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from filtertopo import analyze_points
from filtertopo.errors import InputError
from filtertopo.jobs import limit_blas_threads, map_jobs, resolve_n_jobs


def _square_sum(job):
    """A job whose result shows its input: (index, sum of squares of a seeded random draw)."""
    i, size = job
    x = np.random.default_rng(i).normal(size=size)
    return i, float(x @ x)


def _fail_on_three(job):
    if job == 3:
        raise KeyError(f"job {job}")
    return job


def _slow_identity(job):
    time.sleep(0.05 * job)
    return job


def _pid(job):
    return os.getpid()


def _blas_threads(job):
    from threadpoolctl import threadpool_info

    return sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"})


_WARMED = []


def _mark():
    _WARMED.append(os.getpid())


def _was_warmed(job):
    return bool(_WARMED)


JOBS = [(i, 50 + 10 * i) for i in range(7)]


def test_order_and_identical_results_every_path():
    want = [_square_sum(j) for j in JOBS]
    assert [r[0] for r in want] == list(range(7))
    # the slowest jobs submitted first, results still in input order
    cost = [j[1] for j in JOBS]
    assert map_jobs(_square_sum, JOBS, progress=False) == want
    assert map_jobs(_square_sum, JOBS, n_jobs=None, progress=False) == want
    assert map_jobs(_square_sum, JOBS, n_jobs=2, cost=cost, progress=False) == want
    with ThreadPoolExecutor(2) as ex:
        assert map_jobs(_square_sum, JOBS, executor=ex, cost=cost, progress=False) == want
    with ProcessPoolExecutor(2) as ex:
        assert map_jobs(_square_sum, JOBS, executor=ex, progress=False) == want
    assert map_jobs(_square_sum, [], n_jobs=2, progress=False) == []


def test_results_in_input_order_when_finished_out_of_order():
    jobs = [4, 0, 3, 1]  # job 4 sleeps longest and finishes last
    with ThreadPoolExecutor(4) as ex:
        assert map_jobs(_slow_identity, jobs, executor=ex, progress=False) == jobs


def test_executor_is_not_shut_down():
    with ThreadPoolExecutor(2) as ex:
        map_jobs(_square_sum, JOBS[:3], executor=ex, progress=False)
        assert ex.submit(_square_sum, (0, 3)).result() == _square_sum((0, 3))
    with ProcessPoolExecutor(2) as ex:
        map_jobs(_square_sum, JOBS[:3], executor=ex, progress=False)
        assert ex.submit(_square_sum, (0, 3)).result() == _square_sum((0, 3))


def test_in_process_runs_here_pool_runs_elsewhere():
    assert set(map_jobs(_pid, range(3), progress=False)) == {os.getpid()}
    assert os.getpid() not in map_jobs(_pid, range(3), n_jobs=2, progress=False)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_exception_propagates_with_its_type(n_jobs):
    with pytest.raises(KeyError, match="job 3"):
        map_jobs(_fail_on_three, range(6), n_jobs=n_jobs, progress=False)


def test_exception_propagates_from_executors():
    with ThreadPoolExecutor(2) as ex, pytest.raises(KeyError, match="job 3"):
        map_jobs(_fail_on_three, range(6), executor=ex, progress=False)
    with ProcessPoolExecutor(2) as ex:
        with pytest.raises(KeyError, match="job 3"):
            map_jobs(_fail_on_three, range(6), executor=ex, progress=False)
        assert ex.submit(_fail_on_three, 1).result() == 1  # still usable after the failure


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_n_jobs(bad):
    with pytest.raises(InputError, match="n_jobs"):
        map_jobs(_square_sum, JOBS, n_jobs=bad, progress=False)
    with pytest.raises(InputError, match="n_jobs"):
        resolve_n_jobs(bad)


def test_resolve_n_jobs():
    assert resolve_n_jobs(None) == 1
    assert resolve_n_jobs(4) == 4
    assert resolve_n_jobs(-1) == (os.cpu_count() or 1)


def test_bad_cost_and_blas_threads():
    with pytest.raises(InputError, match="cost"):
        map_jobs(_square_sum, JOBS, cost=[1, 2], progress=False)
    with pytest.raises(InputError, match="blas_threads"):
        map_jobs(_square_sum, JOBS, blas_threads=0, progress=False)


def test_progress_false_prints_nothing(capfd):
    map_jobs(_square_sum, JOBS, progress=False)
    map_jobs(_square_sum, JOBS, n_jobs=2, progress=False)
    assert capfd.readouterr().err == ""


def test_progress_true_draws_a_bar(capsys):
    map_jobs(_square_sum, JOBS[:2], progress=True, desc="layers", unit="layer",
             postfix=lambda job: f"job{job[0]}")
    err = capsys.readouterr().err
    assert "layers" in err and "2/2" in err and "job1" in err


def test_workers_use_one_blas_thread_unless_told():
    assert map_jobs(_blas_threads, range(2), n_jobs=2, progress=False) == [[1], [1]]
    here = _blas_threads(0)
    if here != [1]:  # only tells something on a machine with more than one BLAS thread
        assert map_jobs(_blas_threads, range(2), n_jobs=2, blas_threads=None, mp_context="fork",
                        progress=False) == [here, here]


def test_limit_blas_threads_in_a_worker():
    with ProcessPoolExecutor(1, initializer=limit_blas_threads, initargs=(1,)) as ex:
        assert map_jobs(_blas_threads, [0], executor=ex, progress=False) == [[1]]
    with pytest.raises(InputError, match="BLAS"):
        limit_blas_threads(0)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_initializer_reaches_every_worker(context):
    import multiprocessing as mp

    if context not in mp.get_all_start_methods():
        pytest.skip(f"no {context} here")
    _WARMED.clear()
    assert map_jobs(_was_warmed, range(4), n_jobs=2, initializer=_mark, mp_context=context,
                    progress=False) == [True] * 4
    # fork: once, here, inherited by the workers; spawn: in each worker, not here
    assert bool(_WARMED) == (context == "fork")
    _WARMED.clear()
    assert map_jobs(_was_warmed, range(2), initializer=_mark, progress=False) == [True, True]
    _WARMED.clear()


# --- a study-shaped smoke test: several layers analysed through an executor passed in -----

def _analyze_layer(job):
    name, kernels = job
    points = kernels.reshape(-1, kernels.shape[2] * kernels.shape[3])
    return analyze_points(points, name=name, kernel_shape=kernels.shape[2:], n_landmarks=80,
                          circular=False)


def test_study_shaped_smoke_process_pool_executor():
    rng = np.random.default_rng(7)
    layers = [(f"conv{i}", rng.normal(size=(40, 8, 3, 3))) for i in range(1, 4)]
    layers.append(("conv4", rng.normal(size=(20, 6, 3, 3))))
    here = map_jobs(_analyze_layer, layers, progress=False)
    with ProcessPoolExecutor(2) as ex:
        there = map_jobs(_analyze_layer, layers, executor=ex, cost=[k.size for _, k in layers],
                         progress=False, desc="layers", unit="layer")
    assert [r.name for r in there] == ["conv1", "conv2", "conv3", "conv4"]
    for a, b in zip(here, there):
        assert (a.verdict, a.k, a.n_core) == (b.verdict, b.k, b.n_core)
        assert a.diagrams.keys() == b.diagrams.keys()
        for dim in a.diagrams:
            np.testing.assert_array_equal(a.diagrams[dim], b.diagrams[dim])
        np.testing.assert_array_equal(a.core, b.core)


def test_train_seeds_in_process_and_on_an_executor(tmp_path):
    pytest.importorskip("torch")
    from filtertopo import load_kernels
    from filtertopo.training import train_seeds

    tiny = dict(dataset="digits", n_train=32, batch_size=16, epochs=1, eval_samples=16, threads=1)
    here = train_seeds(tiny, tmp_path / "a", [2, 1], workers=1, progress=False)
    assert here == [tmp_path / "a" / "seed_002", tmp_path / "a" / "seed_001"]
    with ThreadPoolExecutor(1) as ex:
        there = train_seeds(tiny, tmp_path / "b", [2, 1], executor=ex, progress=False)
        assert ex.submit(abs, -1).result() == 1  # not shut down
    assert [p.name for p in there] == ["seed_002", "seed_001"]
    for a, b in zip(here, there):
        ka, kb = load_kernels(a / "kernels.npz").kernels, load_kernels(b / "kernels.npz").kernels
        for name in ka:
            np.testing.assert_array_equal(ka[name], kb[name])


# --- on_result / on_submit / max_in_flight / iter_jobs: what a sweep driver records -----------

def test_on_result_is_called_as_each_job_finishes_not_at_the_end():
    jobs = [6, 0, 1]  # job 6 sleeps 0.3 s: the others are reported while it still runs
    seen = []

    def record(i, res):
        seen.append((i, res, time.perf_counter()))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(3) as ex:
        out = map_jobs(_slow_identity, jobs, executor=ex, on_result=record, progress=False)
    t_end = time.perf_counter()
    assert out == jobs  # still in input order
    assert sorted(i for i, _, _ in seen) == [0, 1, 2] and seen[-1][:2] == (0, 6)
    early = [t for i, _, t in seen if i != 0]
    assert max(early) - t0 < 0.25 < t_end - t0  # reported before the slow job was done


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_on_result_in_process_and_own_pool(n_jobs):
    seen = []
    out = map_jobs(_square_sum, JOBS[:4], n_jobs=n_jobs, progress=False,
                   on_result=lambda i, r: seen.append((i, r)))
    assert out == [_square_sum(j) for j in JOBS[:4]]
    assert sorted(seen) == list(enumerate(out))
    if n_jobs == 1:
        assert [i for i, _ in seen] == [0, 1, 2, 3]  # the in-process loop runs in input order


def test_max_in_flight_bounds_running_jobs_and_on_submit_tells_them():
    import threading

    lock, running, peak, submitted = threading.Lock(), [0], [0], []

    def job(x):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return x

    with ThreadPoolExecutor(4) as ex:
        out = map_jobs(job, range(8), executor=ex, max_in_flight=2, on_submit=submitted.append,
                       cost=list(range(8)), progress=False)
    assert out == list(range(8))
    assert peak[0] <= 2
    assert submitted == list(range(7, -1, -1))  # largest cost first


def test_on_result_that_raises_stops_the_jobs():
    calls = []

    def boom(i, res):
        calls.append(i)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        map_jobs(_square_sum, JOBS, n_jobs=2, max_in_flight=2, on_result=boom, progress=False)
    assert len(calls) == 1
    with pytest.raises(OSError, match="No space"):
        map_jobs(_square_sum, JOBS, on_result=boom, progress=False)


def test_iter_jobs_yields_in_completion_order_and_checks_arguments_at_once():
    from filtertopo.jobs import iter_jobs

    with ThreadPoolExecutor(4) as ex:
        got = list(iter_jobs(_slow_identity, [4, 0, 2], executor=ex, progress=False))
    assert [i for i, _ in got] == [1, 2, 0] and [r for _, r in got] == [0, 2, 4]
    assert list(iter_jobs(abs, [-1, -2], progress=False)) == [(0, 1), (1, 2)]
    with pytest.raises(InputError, match="max_in_flight"):
        iter_jobs(abs, [1], max_in_flight=0)  # at the call, before anything runs
    with pytest.raises(InputError, match="on_submit"):
        iter_jobs(abs, [1], on_submit=3)
    with pytest.raises(InputError, match="on_result"):
        map_jobs(abs, [1], on_result="x")


def test_iter_jobs_closed_early_cancels_the_rest():
    from filtertopo.jobs import iter_jobs

    started = []
    with ThreadPoolExecutor(1) as ex:
        it = iter_jobs(_slow_identity, [1, 1, 1, 1], executor=ex, max_in_flight=1,
                       on_submit=started.append, progress=False)
        assert next(it) == (0, 1)
        it.close()
    assert started == [0, 1]  # the second was submitted while the first was handed back


def test_analyze_runs_on_a_passed_in_executor_with_identical_results():
    # issue 9 step 5: the layers of one analysis on n_jobs=1, n_jobs=2 and a caller's executor
    from concurrent.futures import ProcessPoolExecutor

    from filtertopo import analyze

    rng = np.random.default_rng(3)
    kernels = {f"conv{i}": rng.normal(size=(30, 6, 3, 3)) for i in range(1, 4)}
    kw = dict(n_landmarks=80, progress=False)
    one = analyze(kernels, n_jobs=1, **kw)
    two = analyze(kernels, n_jobs=2, **kw)
    with ProcessPoolExecutor(2) as ex:
        ext = analyze(kernels, executor=ex, **kw)
        assert ex.submit(int, 7).result() == 7  # still usable: analyze does not shut it down
    for res in (two, ext):
        assert res.to_frame().equals(one.to_frame())
        for a, b in zip(one, res):
            assert np.array_equal(a.core, b.core)
            for d in a.diagrams:
                assert np.array_equal(a.diagrams[d], b.diagrams[d])
