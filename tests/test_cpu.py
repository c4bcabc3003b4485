"""streamseg.cpu: one CPU budget sizes every pool; the engines of a batch run one after the other or side by side."""

import threading
import time

import pytest

from streamseg.cpu import (
    MALLOC_SETTINGS,
    CpuBudget,
    EngineRunner,
    available_cores,
    malloc_state,
    pick_schedule,
    plan_engines,
    time_schedules,
    tune_malloc,
)


def test_budget_is_the_affinity_mask_and_never_more():
    have = available_cores()
    assert have >= 1
    assert CpuBudget.for_process().cores == have
    assert CpuBudget.for_process(cores=have + 7).cores == have  # cannot give more than the process may use
    assert CpuBudget.for_process(cores=1).cores == 1


@pytest.mark.parametrize(
    "cores, schedule, requested, expect_threads, codec",
    [
        (2, "sequential", {}, {"semantic": 2, "instance": 2}, 1),  # never overlap: each may use every core
        (2, "concurrent", {}, {"semantic": 1, "instance": 1}, 1),  # side by side: a core each
        (16, "concurrent", {}, {"semantic": 8, "instance": 8}, 4),
        (1, "concurrent", {}, {"semantic": 1, "instance": 1}, 1),  # at least one each
        (8, "sequential", {"instance": 3}, {"semantic": 8, "instance": 3}, 2),  # a config's fixed count stands
    ],
)
def test_plan_sizes_pools_from_one_budget(cores, schedule, requested, expect_threads, codec):
    plan = CpuBudget(cores).plan(["semantic", "instance"], schedule=schedule, requested=requested)
    assert plan.engine_threads == expect_threads
    assert plan.codec_threads == codec
    assert plan.opencv_threads == 1
    d = plan.describe()
    assert d["cores"] == cores and d["schedule"] == schedule


def test_plan_rejects_an_unknown_schedule():
    with pytest.raises(ValueError, match="sequential or concurrent"):
        CpuBudget(2).plan(["semantic"], schedule="parallel")


def test_sequential_runner_runs_on_the_callers_thread_in_order():
    seen = []
    with EngineRunner("sequential") as r:
        out = r.run([lambda: seen.append(threading.get_ident()) or 1, lambda: seen.append(threading.get_ident()) or 2])
    assert out == [1, 2]
    assert set(seen) == {threading.get_ident()}


def test_concurrent_runner_overlaps_jobs_and_keeps_their_order():
    # two jobs that each wait for the other to have started: they finish only if they overlap
    a, b = threading.Event(), threading.Event()

    def job(mine, other, value):
        def run():
            mine.set()
            assert other.wait(5), "the other job never ran at the same time"
            return value

        return run

    with EngineRunner("concurrent") as r:
        assert r.run([job(a, b, "first"), job(b, a, "second")]) == ["first", "second"]
        threads_used = {t.name for t in threading.enumerate() if t.name.startswith("engine-")}
        assert threads_used == {"engine-1"}  # one long-lived worker beside the caller, reused
        a.clear(), b.clear()
        assert r.run([job(a, b, 1), job(b, a, 2)]) == [1, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("engine-")]  # closed


def test_concurrent_runner_raises_a_jobs_error_in_the_caller():
    def boom():
        raise KeyError("engine failed")

    with EngineRunner("concurrent") as r:
        with pytest.raises(KeyError, match="engine failed"):
            r.run([lambda: 1, boom])
        assert r.run([lambda: 1, lambda: 2]) == [1, 2]  # the worker survives


def test_started_jobs_run_on_their_engines_workers_while_the_caller_goes_on():
    """start(): each job on its own worker (the same one for the same engine, batch after batch),
    queued behind what that worker still has; the caller is free until it waits."""
    gate = threading.Event()
    ran = []

    def job(engine, batch):
        def run():
            assert gate.wait(5)
            ran.append((engine, batch, threading.current_thread().name))
            return f"{engine}{batch}"

        return run

    with EngineRunner("concurrent") as r:
        first = r.start([job("sem", 1), job("ins", 1)])
        second = r.start([job("sem", 2), job("ins", 2)])  # two batches in flight, the caller not blocked
        assert ran == []
        gate.set()
        assert first.wait() == ["sem1", "ins1"] and second.wait() == ["sem2", "ins2"]
    workers = {e: {t for e2, _, t in ran if e2 == e} for e in ("sem", "ins")}
    assert workers == {"sem": {"engine-1"}, "ins": {"engine-2"}}  # one worker per engine, none the caller's
    for e in ("sem", "ins"):
        assert [b for e2, b, _ in ran if e2 == e] == [1, 2]  # each engine in batch order


def test_started_jobs_raise_in_wait_and_keep_the_others_results():
    def boom():
        raise KeyError("engine failed")

    with EngineRunner("concurrent") as r:
        started = r.start([lambda: "ticket", boom])
        with pytest.raises(KeyError, match="engine failed"):
            started.wait()
        assert started.values == ["ticket", None]  # what the engine that did start holds, to free
        assert r.start([lambda: 1, lambda: 2]).wait() == [1, 2]
    seen = []
    with EngineRunner("sequential") as r:
        started = r.start([lambda: seen.append(threading.get_ident()) or 1])
        assert seen == [threading.get_ident()]  # sequential: run now, on the caller's thread
        assert started.wait() == [1]


def test_malloc_tuning_is_set_once_per_process_and_said():
    state = tune_malloc()
    assert tune_malloc() is state and malloc_state() is state
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert state == {"allocator": "glibc", "settings": MALLOC_SETTINGS}
    else:
        assert state["settings"] == {} and "not glibc" in state["why"]


def test_time_schedules_and_pick():
    ms = time_schedules(
        {"sequential": [lambda: time.sleep(0.004)] * 2, "concurrent": [lambda: time.sleep(0.004)] * 2}, rounds=3
    )
    assert set(ms) == {"sequential", "concurrent"} and all(v > 0 for v in ms.values())
    assert pick_schedule({"sequential": 20.0, "concurrent": 12.0})[0] == "concurrent"
    assert pick_schedule({"sequential": 19.5, "concurrent": 20.0})[0] == "concurrent"  # a tie: concurrent
    choice, why = pick_schedule({"sequential": 10.0, "concurrent": 30.0})
    assert choice == "sequential" and "10.0" in why and "30.0" in why


class _FakeModel:
    def __init__(self, task, threads, log):
        self.task, self.threads, self.log = task, threads, log
        self.closed = False

    def run(self):
        # a model that gains only sqrt(threads) from more threads, as small models do: two side
        # by side on a thread each (50 ms) beat two one after the other on two threads (2 x 35 ms)
        time.sleep(0.05 / self.threads**0.5)


def test_plan_engines_measures_both_schedules_keeps_the_faster_and_closes_the_other():
    log = []

    def open_models(threads):
        ms = [_FakeModel(t, n, log) for t, n in threads.items()]
        log.append(("open", dict(threads)))
        return ms

    def close(models):
        for m in models:
            m.closed = True
        log.append(("close", {m.task: m.threads for m in models}))

    plan, models, ms = plan_engines(
        CpuBudget(2), ["semantic", "instance"], open_models, lambda ms_: [m.run for m in ms_], close=close, rounds=3
    )
    assert set(ms) == {"sequential", "concurrent"}
    assert plan.schedule == "concurrent", ms
    assert {m.threads for m in models} == {1}
    assert ("close", {"semantic": 2, "instance": 2}) in log  # the losing set is freed
    assert not any(m.closed for m in models)
    assert "ms" in plan.why


def test_plan_engines_fixed_schedule_measures_nothing():
    opened = []
    plan, models, ms = plan_engines(
        CpuBudget(4),
        ["semantic", "instance"],
        lambda t: opened.append(t) or list(t),
        lambda m: [],
        schedule="sequential",
    )
    assert ms == {} and opened == [{"semantic": 4, "instance": 4}] and plan.why == "set in the config"


def test_cpu_features_are_read_once_from_cpuinfo_and_can_be_overridden(monkeypatch):
    from pathlib import Path

    from streamseg import cpu

    monkeypatch.delenv(cpu.CPU_FLAGS_ENV, raising=False)
    cpu.reset_cpu_features()
    real = cpu.cpu_features()
    assert cpu.cpu_features() is real  # cached: every caller sees the same answer
    if Path("/proc/cpuinfo").is_file():
        text = Path("/proc/cpuinfo").read_text()
        assert real.source == "/proc/cpuinfo" and real.model in text
        assert real.bf16 == (" avx512_bf16" in text or " amx_bf16" in text)
        assert real.avx512f == (" avx512f" in text)
    monkeypatch.setenv(cpu.CPU_FLAGS_ENV, "avx2, fma")  # a Zen 3, say
    cpu.reset_cpu_features()
    zen = cpu.cpu_features()
    assert zen.flags == {"avx2", "fma"} and zen.source == cpu.CPU_FLAGS_ENV and zen.model == real.model
    assert not (zen.bf16 or zen.avx512f or zen.vnni or zen.amx)
    assert zen.describe() == f"{real.model} (avx2)"
    monkeypatch.setenv(cpu.CPU_FLAGS_ENV, "avx512f avx512_vnni amx_tile amx_bf16")
    cpu.reset_cpu_features()
    spr = cpu.cpu_features()
    assert spr.bf16 and spr.vnni and spr.amx and spr.avx512f
    monkeypatch.delenv(cpu.CPU_FLAGS_ENV)
    cpu.reset_cpu_features()
