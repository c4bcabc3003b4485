"""One CPU budget for the whole process, from which every thread pool is sized.

On a small CPU every runtime starting its own pool (ONNX Runtime or OpenVINO per engine,
OpenCV, x264, the decoder) oversubscribes the cores: measured on a 2-core VM, two engines
with 2 intra-op threads each beside the pipeline's threads ran 2x slower than alone. So the
pipeline owns the cores:

    budget = CpuBudget.for_process()            # the cores this process may use
    plan = budget.plan(["semantic", "instance"], schedule="sequential")
    plan.engine_threads["semantic"]            # intra-op threads of that engine
    plan.apply()                               # OpenCV's pool, set once

`schedule` is how the engines of one batch share the cores: `sequential` (one after the
other, each with every core) or `concurrent` (at the same time, each on its share of the
cores). `choose_schedule` decides it from a measurement at start-up; the report states the
choice and the measured times (`EngineRunner.describe()`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# glibc malloc for a process of large per-frame arrays (frames, masks: megabytes each, made on
# one stage's thread and freed on another). glibc's defaults give each new thread an arena of
# its own, serve blocks above a threshold it learns with fresh mmaps, and hand freed memory
# back to the kernel, so a pipeline's threads kept faulting pages in (zeroed, one by one) for
# memory they had just freed: a new pipeline's first instance decode took 45-53 ms of CPU
# against 4 ms later, and the stages' p99 spiked each time an arena grew. One arena, blocks
# up to 256 MB from the heap, freed memory kept (up to 1 GB) and grown 64 MB at a time:
# measured on the bench's live run at 80% load (4 runs of 4 s), e2e p99 46-50 ms against 60-180.
MALLOC_SETTINGS = {"arena_max": 1, "mmap_threshold": 256 << 20, "trim_threshold": 1 << 30, "top_pad": 64 << 20}
_MALLOPT = {"arena_max": -8, "mmap_threshold": -3, "trim_threshold": -1, "top_pad": -2}  # glibc's M_* numbers
_malloc_state: dict | None = None


def tune_malloc() -> dict:
    """Set glibc's malloc as MALLOC_SETTINGS says, once per process (later calls return the same
    state). Process-wide and one-way, like the thread pools. Not glibc: nothing set, said so."""
    global _malloc_state
    if _malloc_state is not None:
        return _malloc_state
    import ctypes
    import ctypes.util
    import platform

    state: dict = {"allocator": "glibc", "settings": {}}
    if platform.libc_ver()[0] != "glibc":
        _malloc_state = {
            "allocator": platform.libc_ver()[0] or "unknown",
            "settings": {},
            "why": "not glibc: left as is",
        }
        return _malloc_state
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    for name, value in MALLOC_SETTINGS.items():
        if libc.mallopt(_MALLOPT[name], value) == 1:
            state["settings"][name] = value
    _malloc_state = state
    return state


def malloc_state() -> dict | None:
    """What tune_malloc set in this process (None: nothing was asked to)."""
    return _malloc_state


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset), not the machine's."""
    from streamseg.backends.base import default_threads

    return default_threads()


# The CPU features that decide precision, read in one place. OpenVINO runs bf16 only where the
# CPU has it (AVX512_BF16 or AMX), and would pick it by itself there; benchmarks and tests ask
# the same question. STREAMSEG_CPU_FLAGS (space- or comma-separated /proc/cpuinfo flag names, e.g.
# "avx2 fma") makes the process act as if its CPU had exactly those flags: how the suite proves
# the paths of a CPU without bf16 (an AMD EPYC Zen 3, say) on a machine that has it.
CPU_FLAGS_ENV = "STREAMSEG_CPU_FLAGS"


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and its /proc/cpuinfo flags, and the precision features they imply."""

    model: str
    flags: frozenset[str]
    source: str  # "/proc/cpuinfo", or the override's name

    @property
    def avx512f(self) -> bool:
        return "avx512f" in self.flags

    @property
    def bf16(self) -> bool:
        """bf16 arithmetic: AVX512_BF16 or AMX's bf16 tiles (what OpenVINO's CPU plugin needs for bf16)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def vnni(self) -> bool:
        """int8 dot products (AVX512_VNNI or AVX_VNNI): the INT8 speed-up of ONNX Runtime and OpenVINO."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni"})

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    def describe(self) -> str:
        """The model and the flags that matter here, as figures in docs/ name their machine."""
        shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in self.flags]
        return f"{self.model} ({' '.join(shown) or 'none of avx2/avx512/vnni/bf16/amx'})"


_features: CpuFeatures | None = None


def cpu_features() -> CpuFeatures:
    """The CPU's features (cached), or those STREAMSEG_CPU_FLAGS says."""
    global _features
    if _features is None:
        import os
        import platform

        found: dict[str, str] = {}
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:  # the first processor's lines are every processor's here
                    key, _, value = line.partition(":")
                    found.setdefault(key.strip(), value.strip())
        except OSError:
            pass
        model = found.get("model name") or platform.processor() or "unknown CPU"
        flags = frozenset(found.get("flags", "").split())
        source = "/proc/cpuinfo"
        override = os.environ.get(CPU_FLAGS_ENV)
        if override is not None:
            flags, source = frozenset(override.replace(",", " ").split()), CPU_FLAGS_ENV
        _features = CpuFeatures(model, flags, source)
    return _features


def reset_cpu_features() -> None:
    """Forget the cached features (a test that set STREAMSEG_CPU_FLAGS calls this)."""
    global _features
    _features = None


@dataclass(frozen=True)
class CpuPlan:
    """How many threads each pool gets. Engines' 0 = 'ask the budget' has been resolved here."""

    cores: int
    schedule: str  # sequential | concurrent
    engine_threads: dict[str, int]
    opencv_threads: int
    codec_threads: int  # x264 / decoder threads per stream
    blas_threads: int = 1  # numpy's BLAS (mask assembly's matmul): small products, a pool only spins
    why: str = ""
    measured_ms: dict[str, float] = field(default_factory=dict)  # per batch, each schedule timed at start-up

    def apply(self) -> None:
        """Size the process-wide pools that have no per-object setting: OpenCV's and numpy's BLAS.

        OpenBLAS's workers spin between calls; measured on the instance decoder (a 32-wide
        coefficient x prototype product per frame), its second thread doubled the decoder's CPU
        time for no gain in wall time."""
        import cv2
        from threadpoolctl import threadpool_limits

        cv2.setNumThreads(self.opencv_threads)
        threadpool_limits(limits=self.blas_threads, user_api="blas")

    def describe(self) -> dict:
        return {
            "cores": self.cores,
            "schedule": self.schedule,
            "engine_threads": dict(self.engine_threads),
            "opencv_threads": self.opencv_threads,
            "codec_threads": self.codec_threads,
            "blas_threads": self.blas_threads,
            "why": self.why,
            "measured_ms": dict(self.measured_ms),
        }


@dataclass(frozen=True)
class CpuBudget:
    """`cores` to share among the engines, OpenCV and the codecs."""

    cores: int

    @classmethod
    def for_process(cls, cores: int = 0) -> CpuBudget:
        """`cores` = 0: every core this process may use; more than that is capped to it."""
        have = available_cores()
        return cls(min(cores, have) if cores > 0 else have)

    def plan(
        self,
        tasks: Sequence[str],
        *,
        schedule: str = "sequential",
        requested: dict[str, int] | None = None,
        opencv_threads: int = 1,
        why: str = "",
    ) -> CpuPlan:
        """Threads per pool. `requested`: threads a config fixed for an engine (0 or absent = from the budget).

        Sequential engines never overlap, so each may use every core; concurrent ones split the
        cores between them (at least one each). OpenCV runs inside the pipeline's stages, which
        are already parallel to each other, so its own pool defaults to 1; the codecs get one
        thread per four cores, at least one, so a 2-core machine encodes on one thread."""
        if schedule not in ("sequential", "concurrent"):
            raise ValueError(f"schedule is sequential or concurrent, not {schedule!r}")
        requested = requested or {}
        share = self.cores if schedule == "sequential" or not tasks else max(1, self.cores // len(tasks))
        threads = {t: requested.get(t) or share for t in tasks}
        return CpuPlan(
            cores=self.cores,
            schedule=schedule,
            engine_threads=threads,
            opencv_threads=opencv_threads if opencv_threads > 0 else self.cores,
            codec_threads=max(1, self.cores // 4),
            why=why,
        )


class EngineRunner:
    """Runs the engines of one batch: one after the other on the caller's thread (sequential), or
    each on its own long-lived thread at the same time (concurrent). `run(jobs)` returns the jobs'
    results in order; an exception in a job is raised in the caller."""

    def __init__(self, schedule: str = "sequential", *, name: str = "engine") -> None:
        if schedule not in ("sequential", "concurrent"):
            raise ValueError(f"schedule is sequential or concurrent, not {schedule!r}")
        self.schedule = schedule
        self.name = name
        self._workers: list[_Worker] = []

    def run(self, jobs: Sequence[Callable[[], object]]) -> list:
        if self.schedule == "sequential" or len(jobs) < 2:
            return [job() for job in jobs]
        while len(self._workers) < len(jobs) - 1:
            self._workers.append(_Worker(f"{self.name}-{len(self._workers) + 1}"))
        boxes = [w.submit(job) for w, job in zip(self._workers, jobs[1:], strict=False)]
        first = _call(jobs[0])  # the caller's thread runs one job itself
        results = [first, *(b.wait() for b in boxes)]
        for r in results:
            if isinstance(r, _Failed):
                raise r.error
        return results

    def start(self, jobs: Sequence[Callable[[], object]]) -> Started:
        """Begin the jobs and return at once; `.wait()` gives their results (or raises a job's
        error). Concurrent: each job on its engine's own worker, queued behind what that worker
        still has, so the caller can prepare and start the next batch while this one runs and
        no engine waits on the other between batches. Sequential: they run now, here."""
        if self.schedule == "sequential" or len(jobs) < 2:
            return Started([_call(job) for job in jobs])
        while len(self._workers) < len(jobs):
            self._workers.append(_Worker(f"{self.name}-{len(self._workers) + 1}"))
        return Started([w.submit(job) for w, job in zip(self._workers, jobs, strict=False)])

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers.clear()

    def __enter__(self) -> EngineRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Started:
    """Jobs begun by `EngineRunner.start`: `wait()` -> their results in order."""

    def __init__(self, parts: list) -> None:
        self._parts = parts  # results, or _Box of a worker's job

        self.values: list = []  # after wait(): each job's result, None for one that failed

    def wait(self) -> list:
        results = [p.wait() if isinstance(p, _Box) else p for p in self._parts]
        self.values = [None if isinstance(r, _Failed) else r for r in results]
        for r in results:
            if isinstance(r, _Failed):
                raise r.error
        return self.values


@dataclass
class _Failed:
    error: BaseException


def _call(job):
    try:
        return job()
    except BaseException as e:  # handed to the caller, who raises it
        return _Failed(e)


@dataclass
class _Box:
    done: threading.Event = field(default_factory=threading.Event)
    value: object = None

    def wait(self):
        self.done.wait()
        return self.value


class _Worker:
    def __init__(self, name: str) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._t = threading.Thread(target=self._loop, name=name, daemon=True)
        self._t.start()

    def submit(self, job) -> _Box:
        box = _Box()
        self._q.put((job, box))
        return box

    def _loop(self) -> None:
        while (item := self._q.get()) is not None:
            job, box = item
            box.value = _call(job)
            box.done.set()

    def stop(self) -> None:
        self._q.put(None)
        self._t.join(timeout=5)


def time_schedules(
    jobs_by_schedule: dict[str, Sequence[Callable[[], object]]], *, rounds: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall ms per round of each schedule's jobs, rounds interleaved so drift hits both alike.

    `jobs_by_schedule`: {"sequential": [engine calls sized for it], "concurrent": [...]}: each
    schedule's engines are loaded with the threads its plan gives them."""
    import statistics

    runners = {s: EngineRunner(s, name=f"probe-{s}") for s in jobs_by_schedule}
    times: dict[str, list[float]] = {s: [] for s in jobs_by_schedule}
    try:
        for i in range(warmup + rounds):
            for s, jobs in jobs_by_schedule.items():
                t0 = time.perf_counter()
                runners[s].run(jobs)
                if i >= warmup:
                    times[s].append((time.perf_counter() - t0) * 1000)
    finally:
        for r in runners.values():
            r.close()
    return {s: round(statistics.median(v), 3) for s, v in times.items()}


def pick_schedule(ms: dict[str, float], *, margin: float = 0.05) -> tuple[str, str]:
    """The schedule to use and why: concurrent unless sequential measured faster by more than
    `margin`. A tie goes to concurrent: each engine then holds one share of the cores instead of
    all of them, so the other stages keep theirs - in the pipeline (bundled models, 1280x720,
    2 cores) concurrent engines on a thread each gave 34.2 / 33.9 frames/s against 32.7 / 27.3
    for one after the other on two threads each, where the engines alone had timed alike."""
    seq, conc = ms.get("sequential"), ms.get("concurrent")
    if seq is None or conc is None:
        only = "sequential" if conc is None else "concurrent"
        return only, f"{only}: the only schedule measured"
    if seq < conc * (1 - margin):
        return "sequential", f"sequential {seq:.1f} ms vs concurrent {conc:.1f} ms per batch at start-up"
    return "concurrent", f"concurrent {conc:.1f} ms vs sequential {seq:.1f} ms per batch at start-up"


def plan_engines(
    budget: CpuBudget,
    tasks: Sequence[str],
    open_models: Callable[[dict[str, int]], list],
    jobs: Callable[[list], Sequence[Callable[[], object]]],
    *,
    schedule: str = "auto",
    requested: dict[str, int] | None = None,
    opencv_threads: int = 1,
    close: Callable[[list], None] = lambda models: None,
    rounds: int = 5,
    fixed_why: str = "set in the config",
) -> tuple[CpuPlan, list, dict[str, float]]:
    """Open the engines sized for the schedule that runs them fastest on this machine.

    `open_models(threads by task)` loads the engines (entered) with those intra-op threads;
    `jobs(models)` gives one call per engine that runs a typical batch; `close(models)` frees a set.
    `schedule` = auto: both schedules are loaded and timed (interleaved rounds), the faster kept
    and the other closed; with one engine, or a fixed schedule, nothing is timed.
    Returns the plan (its `why` says what was measured), the kept models and the timings."""
    if schedule != "auto" or len(tasks) < 2:
        fixed = "sequential" if schedule == "auto" else schedule
        plan = budget.plan(
            tasks,
            schedule=fixed,
            requested=requested,
            opencv_threads=opencv_threads,
            why="one engine" if len(tasks) < 2 else fixed_why,
        )
        plan.apply()
        return plan, open_models(plan.engine_threads), {}
    plans = {
        s: budget.plan(tasks, schedule=s, requested=requested, opencv_threads=opencv_threads)
        for s in ("sequential", "concurrent")
    }
    plans["sequential"].apply()
    loaded = {"sequential": open_models(plans["sequential"].engine_threads)}
    if plans["concurrent"].engine_threads == plans["sequential"].engine_threads:
        loaded["concurrent"] = loaded["sequential"]  # one core: the same engines either way
    else:
        try:
            loaded["concurrent"] = open_models(plans["concurrent"].engine_threads)
        except BaseException:
            close(loaded["sequential"])
            raise
    try:
        ms = time_schedules({s: jobs(m) for s, m in loaded.items()}, rounds=rounds)
    except BaseException:
        for m in {id(v): v for v in loaded.values()}.values():
            close(m)
        raise
    choice, why = pick_schedule(ms)
    for s, m in loaded.items():
        if s != choice and m is not loaded[choice]:
            close(m)
    plan = plans[choice]
    return CpuPlan(**{**plan.__dict__, "why": why, "measured_ms": ms}), loaded[choice], ms


__all__ = ["CpuBudget", "CpuPlan", "EngineRunner", "available_cores", "pick_schedule", "plan_engines", "time_schedules"]
