"""`streamseg serve FLEET.yaml`: live cameras spread over a Ray cluster, moved when a node dies.

Ray's own primitives do the distribution; nothing here schedules by hand:
- A detached, named controller actor (`FleetController`, name `streamseg-fleet` in namespace
  `streamseg`) owns the placement: which cameras each group carries. It is the only place
  that starts or stops a group.
- A group actor (`CameraGroup`) runs one multi-stream live pipeline for up to
  `cameras_per_actor` cameras (the stream density the bench measures), asking Ray for
  `cpus_per_actor` CPUs (and a GPU on TensorRT); Ray places it (SPREAD over the nodes).
- The controller polls every group's figures each `poll_s`. A group whose actor or node died
  answers with Ray's actor-died error: its cameras are placed on new groups where Ray finds
  room, and resume (a live source opens afresh). Each camera's outage runs from the last
  frame out seen before the death to the first frame out on its new group.

A camera never runs twice at once: cameras are placed only by the one controller; a group is
replaced only once Ray has declared its actor dead (Ray kills a dead-declared node's workers
should the node come back: its workers share the raylet's fate), and a group the controller
retires is killed (`ray.kill`) before its cameras go elsewhere.

One view: `/metrics` (Prometheus text) and `/stats` (JSON) of the whole fleet at the
config's `metrics` address, served by the `streamseg serve` process from the controller's
snapshot; the fleet report (JSON) at the end. Changing the fleet file while it runs (or
SIGHUP) places new cameras and stops removed ones without touching the others.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator

from streamseg.config import Section, load_config, validate_config
from streamseg.errors import ConfigError, UserError

log = logging.getLogger("streamseg")

CONTROLLER = "streamseg-fleet"
NAMESPACE = "streamseg"


class CameraSpec(Section):
    id: str = Field(description="The camera's id, unique in the fleet: its stream id in every output.")
    uri: str = Field(description="Source URI (rtsp://..., rtp://..., /dev/video0, synthetic://...).")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Per-camera source settings (any `sources[]` key: latency_ms, live, ...)."
    )


class FleetConfig(Section):
    pipeline: str = Field(
        description="The streamseg config every group runs (engines, pipeline, overlay, tracking, analytics, sinks); "
        "a sink path with {camera} gives each camera its own output."
    )
    cameras: list[CameraSpec] = Field(min_length=1, description="The live cameras.")
    cameras_per_actor: int | None = Field(
        2,
        ge=1,
        le=256,
        description="Cameras one group (one pipeline) carries; null: from `density` (what `bench --streams` measured).",
    )
    density: str | None = Field(
        None,
        description="A density.json of `streamseg bench --streams` on the nodes' kind: with cameras_per_actor null, "
        "each group carries the best one-process density of its first profile.",
    )
    cpus_per_actor: float = Field(1.0, gt=0, le=1024, description="CPUs each group asks Ray for.")
    spare_actors: int = Field(
        1,
        ge=0,
        le=64,
        description="Idle groups kept up (their CPUs reserved), so a failover starts engines, not a process.",
    )
    gpus_per_actor: float = Field(0.0, ge=0, le=16, description="GPUs each group asks Ray for (TensorRT engines).")
    poll_s: float = Field(0.5, gt=0, le=60, description="How often the controller reads every group's figures.")
    metrics: str | None = Field(
        "127.0.0.1:9500", description="HOST:PORT of the fleet's /metrics and /stats (null: none)."
    )
    report: str | None = Field("out/fleet-live.json", description="The fleet report written at the end.")
    events: str | None = Field(
        None,
        description="A JSONL file of every camera's analytics events (with camera and node), appended as they come.",
    )

    @field_validator("metrics")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        if v is not None:
            _, sep, port = v.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"metrics {v!r}: expected HOST:PORT, e.g. 127.0.0.1:9500")
        return v

    @field_validator("cameras")
    @classmethod
    def _unique(cls, v: list[CameraSpec]) -> list[CameraSpec]:
        seen = set()
        for c in v:
            if c.id in seen:
                raise ValueError(f"two cameras have the id {c.id!r}")
            seen.add(c.id)
        return v


def load_fleet(path: str | Path) -> tuple[FleetConfig, dict]:
    """The fleet file and the pipeline config it names (as validated data), or a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"fleet config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        fleet = FleetConfig.model_validate(data)
    except Exception as e:  # pydantic's message, one line
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}: {' '.join(str(e).splitlines()[1:3])}") from None
    pipe_path = Path(fleet.pipeline)
    if not pipe_path.is_absolute():
        pipe_path = path.parent / pipe_path
    cfg = load_config(pipe_path)
    for task in ("semantic", "instance"):  # cards relative to the pipeline config travel as absolute paths
        ec = getattr(cfg.engines, task)
        if ec is not None and not Path(ec.card).is_absolute():
            for base in (pipe_path.parent, Path.cwd()):
                if (base / ec.card).exists():
                    ec.card = str((base / ec.card).resolve())
                    break
    data = cfg.model_dump()
    if fleet.cameras_per_actor is None:
        fleet.cameras_per_actor = density_cameras(fleet.density, path, data)
    data["sinks"] = check_outputs(fleet, data, path)
    return fleet, data


def density_cameras(density: str | None, fleet_path: Path, cfg_data: dict) -> int:
    """Cameras per group from a `bench --streams` result: the density of the one-process variant
    that runs what the fleet's pipeline runs (its engines' backend and batch size), first profile."""
    if density is None:
        raise ConfigError(f"{fleet_path}: cameras_per_actor is null, so `density` must name a density.json")
    p = Path(density) if Path(density).is_absolute() else fleet_path.parent / density
    engines = [e for e in (cfg_data["engines"].get("semantic"), cfg_data["engines"].get("instance")) if e]
    backend = engines[0]["backend"] if engines else "onnxruntime"
    want = f"streamseg ({backend}, batch {cfg_data['pipeline']['batch']['max_size']})"
    try:
        prof = json.loads(p.read_text())["density"]["profiles"][0]
        variants = {v["variant"]: v["density"] for v in prof["variants"]}
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ConfigError(f"{fleet_path}: density {p}: not a `streamseg bench --streams` result ({e})") from None
    if want not in variants:
        raise ConfigError(f"{fleet_path}: density {p} has no {want!r} (it has: {', '.join(variants)})")
    if variants[want] < 1:
        raise ConfigError(f"{fleet_path}: density {p}: {want} carried no camera within the bounds")
    return variants[want]


def group_config(cfg_data: dict, cameras: list[dict], cpus: float = 0) -> dict:
    """The pipeline config of one group: its cameras as live sources; each sink whose path has
    {camera} becomes one sink per camera taking only that camera's stream; the CPU budget is the
    CPUs Ray reserved for the group (its pools sized to them, not to the whole node)."""
    sinks = []
    for sc in cfg_data.get("sinks") or [{"uri": "null://"}]:
        if "{camera}" in sc["uri"]:
            sinks += [{**sc, "uri": sc["uri"].replace("{camera}", c["id"]), "streams": [c["id"]]} for c in cameras]
        else:
            sinks.append(sc)
    sources = [{**c.get("overrides", {}), "uri": c["uri"], "id": c["id"], "mode": "live"} for c in cameras]
    # the fleet's report and /metrics are the controller's; a group writes neither of its own
    metrics = {**(cfg_data.get("metrics") or {}), "progress": False, "summary": False, "prometheus": None}
    metrics.update(report=None, plot=None)
    pipeline = {**(cfg_data.get("pipeline") or {})}
    if cpus:
        pipeline["cpu_cores"] = max(1, math.ceil(cpus))
    return {**cfg_data, "sources": sources, "sinks": sinks, "metrics": metrics, "pipeline": pipeline, "max_frames": None}


def check_outputs(fleet: FleetConfig, cfg_data: dict, where: Path) -> list[dict]:
    """Sinks every group can own: with more than one group, a file, preview or stream sink must
    name its camera ({camera}) or two groups would write one file or bind one port. Relative
    file paths are made absolute (the groups run in Ray's workers, elsewhere)."""
    from streamseg.sinks import sink_file

    groups = math.ceil(len(fleet.cameras) / fleet.cameras_per_actor)
    out = []
    for sc in cfg_data.get("sinks") or []:
        uri = sc["uri"]
        if groups > 1 and "{camera}" not in uri and not uri.startswith("null:"):
            raise ConfigError(
                f"{where}: sink {uri!r} would be written by each of {groups} groups: put {{camera}} in it "
                "(out/{camera}.jsonl), or use null://"
            )
        f = sink_file(uri.replace("{camera}", "x"))
        if f is not None and not f.is_absolute():
            uri = str(Path.cwd() / uri)
        out.append({**sc, "uri": uri})
    return out


def chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


# the group: one pipeline, several cameras -------------------------------------------------------
class CameraGroup:
    """Runs one live pipeline for its cameras on its own thread; `stats()` per camera.

    Made idle (a spare: its process started, the pipeline's libraries imported) and given its
    cameras by `start`, so a failover waits for the engines to load, not for a process to start."""

    def __init__(self, group_id: str) -> None:
        import streamseg.pipeline  # noqa: F401  (the expensive imports, done before any camera waits)

        self.group_id = group_id
        self.cameras: list[str] = []
        self.pipe = None
        self.error: str | None = None
        self.done = False
        self._events_seen = 0  # analytics events already handed to the controller
        self._wall_minus_perf = time.time_ns() - time.perf_counter_ns()  # perf_counter -> wall clock

    def start(self, cfg_data: dict, cameras: list[dict], cpus: float = 0) -> str:
        from streamseg.pipeline import Pipeline

        self.cameras = [c["id"] for c in cameras]
        self.pipe = Pipeline(validate_config(group_config(cfg_data, cameras, cpus)))
        self._thread = threading.Thread(target=self._run, name=f"group-{self.group_id}", daemon=True)
        self._thread.start()
        import ray

        return ray.get_runtime_context().get_node_id()

    def _run(self) -> None:
        try:
            self.pipe.run()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            log.error("group %s failed: %s", self.group_id, self.error)
        finally:
            self.done = True

    def _wall(self, ns: int | None) -> float | None:
        return (ns + self._wall_minus_perf) / 1e9 if ns is not None else None

    def stats(self) -> dict:
        import ray

        cams = {}
        for s in self.pipe.streams if self.pipe is not None else ():
            rec = self.pipe.recorder
            v = rec.stream_view(s.id)
            cams[s.id] = {
                **v,
                "first_out": self._wall(v.pop("first_out_ns")),
                "last_out": self._wall(v.pop("last_out_ns")),
                "fps_source": s.source.fps,
                "reconnects": getattr(s.source, "reconnects", 0),
            }
        live = self.pipe.recorder.live(max_age_s=0.5) if self.pipe is not None else {}
        events, self._events_seen, missed = new_events(getattr(self.pipe, "analytics_stage", None), self._events_seen)
        return {
            "group": self.group_id,
            "now": time.time(),
            "started": self.pipe is not None,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": __import__("os").getpid(),
            "running": not self.done,
            "error": self.error,
            "fps": live.get("fps"),
            "cameras": cams,
            "events": events,  # analytics events raised since the last answer (docs/analytics.md)
            "events_missed": missed,
        }

    def stop(self) -> dict:
        if self.pipe is not None:
            self.pipe.stop()
            self._thread.join(timeout=60)
        return self.stats()


def new_events(stage, seen: int) -> tuple[list[dict], int, int]:
    """The analytics events a group's stage raised since `seen` of them were handed on: (events,
    the new count, how many fell out of the stage's recent list before anyone read them)."""
    if stage is None:
        return [], seen, 0
    for _ in range(3):  # the overlay thread may append while we copy
        try:
            total, recent = sum(stage.totals.values()), list(stage.recent)
            break
        except RuntimeError:
            continue
    else:
        return [], seen, 0
    fresh = total - seen
    got = recent[-fresh:] if fresh > 0 else []
    return [e.to_dict() for e in got], total, max(0, fresh - len(got))


# the controller ------------------------------------------------------------------------------
RETRY_S = (2.0, 60.0)  # a group that cannot start is retried after 2 s, doubling up to 60 s


class Camera:
    """What the controller knows of one camera across the groups that carried it. Times are the
    controller's clock (each group's own times are translated with the offset its answers show)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.group: str | None = None
        self.node: str | None = None
        self.done: dict = {"in": 0, "out": 0, "dropped": {}, "lost_in_flight": 0}  # groups that are gone
        self.current: dict | None = None  # the figures of the group carrying it now
        self.outages: list[dict] = []  # {start, end, s, frames, why}
        self.placed_at: float | None = None
        self.last_out: float | None = None  # when its last frame came out, as far as the controller knows
        self.attempts = 0  # failed starts in a row
        self.retry_at = 0.0
        self.error: str | None = None

    @property
    def id(self) -> str:
        return self.spec["id"]

    @property
    def down(self) -> bool:
        return bool(self.outages) and self.outages[-1]["end"] is None

    def retire(self, lost: bool) -> None:
        """Its group is gone: what it last reported is kept; with `lost`, the frames then in flight
        went with it (a group stopped on purpose reports after its ledger closed: none)."""
        c = self.current or {}
        self.done["in"] += c.get("in", 0)
        self.done["out"] += c.get("out", 0)
        for r, n in (c.get("dropped") or {}).items():
            self.done["dropped"][r] = self.done["dropped"].get(r, 0) + n
        if lost:
            self.done["lost_in_flight"] += c.get("in", 0) - c.get("out", 0) - sum((c.get("dropped") or {}).values())
        self.current = None

    def open_outage(self, now: float, why: str, group: str | None = None) -> None:
        """The camera has no live group from its last frame out (now, if none came out yet); an
        outage already open goes on (a second death before it came back is the same outage)."""
        if not self.down:
            start = min(self.last_out or now, now)
            self.outages.append({"start": start, "end": None, "s": None, "frames": 0, "why": why, "group": group})

    def close_outage(self, first_out: float) -> dict:
        o = self.outages[-1]
        o["end"] = max(first_out, o["start"])
        o["s"] = round(o["end"] - o["start"], 3)
        o["frames"] = int(round(o["s"] * ((self.current or {}).get("fps_source") or 0)))
        return o

    def view(self) -> dict:
        c = self.current or {}
        dropped = dict(self.done["dropped"])
        for r, n in (c.get("dropped") or {}).items():
            dropped[r] = dropped.get(r, 0) + n
        missed = sum(o["frames"] for o in self.outages)
        return {
            "camera": self.id,
            "uri": self.spec["uri"],
            "group": self.group,
            "node": self.node,
            "fps": c.get("fps_source") or 0,
            "frames": {
                # the camera's frames: served by a group, or missed while it had none
                "in": self.done["in"] + c.get("in", 0) + missed,
                "out": self.done["out"] + c.get("out", 0),
                "dropped": dropped,
                "in_flight": c.get("in_flight", 0),
                "outage": missed + self.done["lost_in_flight"],
            },
            "e2e_ms": {"p50": c.get("p50"), "p99": c.get("p99")},
            "reconnects": c.get("reconnects", 0),
            "outages": [dict(o) for o in self.outages],
            "outage_s": round(sum(o["s"] for o in self.outages if o["s"] is not None), 3),
            "down": self.down,
            "error": self.error,
        }


class FleetController:
    """Owns the placement; polls the groups on a thread of its own (a threaded Ray actor)."""

    def __init__(self) -> None:
        self.fleet: dict | None = None
        self.cfg_data: dict | None = None
        self.cameras: dict[str, Camera] = {}
        self.groups: dict[str, dict] = {}  # group id -> {"actor", "cameras", "node", "started", "error"}
        self.spares: list[tuple[str, Any]] = []  # idle groups, their processes up, waiting for cameras
        self.waiting: list[str] = []  # cameras to place once their retry time comes (a failed start)
        self._n = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.events: list[dict] = []  # placements, deaths, recoveries: the fleet's own log (the last 500)
        self.camera_events: collections.deque = collections.deque(maxlen=10_000)  # every camera's analytics events
        self.camera_events_n = 0  # how many ever came in (a reader's cursor counts on it)
        self.camera_events_by: collections.Counter = collections.Counter()  # (camera, type) -> events
        self.camera_events_missed = 0

    # placement ---------------------------------------------------------------------------
    def apply(self, fleet: dict, cfg_data: dict) -> dict:
        """Make the fleet what `fleet` says: new cameras placed, removed (or changed) ones stopped;
        a group that carried a removed camera stops once and its other cameras are placed anew
        (a `reload` outage each); every other camera keeps its group."""
        import ray

        with self._lock:
            self.fleet, self.cfg_data = fleet, cfg_data
            wanted = {c["id"]: c for c in fleet["cameras"]}
            gone = [cid for cid, cam in self.cameras.items() if wanted.get(cid) != cam.spec]
            stopping = {}
            for cid in gone:
                gid = self.cameras[cid].group
                if gid in self.groups:
                    stopping[gid] = self.groups.pop(gid)
        finals = self._stop_groups(stopping)  # no lock held while groups stop
        with self._lock:
            mates = []
            for gid, g in stopping.items():
                for cid in g["cameras"]:
                    cam = self.cameras.get(cid)
                    if cam is None:
                        continue
                    cam.current = (finals.get(gid) or {}).get("cameras", {}).get(cid, cam.current)
                    cam.retire(lost="cameras" not in (finals.get(gid) or {}))
                    if cid not in gone:
                        cam.open_outage(time.time(), "reload", gid)
                        mates.append(cam)
                with contextlib.suppress(Exception):
                    ray.kill(g["actor"], no_restart=True)
                self._log("stopped", group=gid, cameras=g["cameras"])
            for cid in gone:
                self.cameras.pop(cid)
                if cid in self.waiting:
                    self.waiting.remove(cid)
            new = [Camera(spec) for cid, spec in wanted.items() if cid not in self.cameras]
            for cam in new:
                self.cameras[cam.id] = cam
            self._place(mates + new)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll_loop, name="fleet-poll", daemon=True)
                self._poller.start()
            return {"placed": [c.id for c in new], "stopped": gone, "cameras": sorted(self.cameras)}

    def _stop_groups(self, groups: dict[str, dict], timeout_s: float = 60.0) -> dict[str, dict]:
        """Stop groups all at once, one deadline for all: {group id: its final figures}."""
        import ray

        refs = {gid: g["actor"].stop.remote() for gid, g in groups.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        finals = {}
        for gid, ref in refs.items():
            if ref in ready:
                with contextlib.suppress(Exception):
                    finals[gid] = ray.get(ref)
        return finals

    def _new_group(self):
        import ray

        fleet = self.fleet
        self._n += 1
        gid = f"g{self._n}"
        actor = (
            ray.remote(CameraGroup)
            .options(
                num_cpus=fleet["cpus_per_actor"],
                num_gpus=fleet["gpus_per_actor"],
                max_restarts=0,  # the controller replaces a dead group, so no camera runs twice
                max_concurrency=4,
                scheduling_strategy="SPREAD",
            )
            .remote(gid)
        )
        return gid, actor

    def _place(self, cams: list[Camera]) -> None:
        """Each batch of cameras_per_actor cameras whose retry time has come goes to a spare group
        (idle, its process up) when one is there, else to a new one; the spares are topped up."""
        now = time.time()
        ready = [c for c in cams if c.retry_at <= now]
        self.waiting += [c.id for c in cams if c.retry_at > now and c.id not in self.waiting]
        for batch in chunks(ready, self.fleet["cameras_per_actor"]):
            gid, actor = self.spares.pop(0) if self.spares else self._new_group()
            started = actor.start.remote(self.cfg_data, [c.spec for c in batch], self.fleet["cpus_per_actor"])
            self.groups[gid] = {"actor": actor, "cameras": [c.id for c in batch], "node": None, "started": started}
            for c in batch:
                c.group, c.node, c.placed_at = gid, None, now
            self._log("placed", group=gid, cameras=[c.id for c in batch])
        while len(self.spares) < self.fleet["spare_actors"]:
            self.spares.append(self._new_group())

    # watching ----------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._stop.wait(self.fleet["poll_s"] if self.fleet else 0.5):
            try:
                self.poll()
            except Exception:  # a bug here must not end failover silently
                log.exception("fleet: poll failed")

    def poll(self) -> None:
        """Read every group's figures (one deadline for all); a group Ray declared dead, or whose
        pipeline ended or failed to start, gives its cameras to new groups."""
        import ray
        from ray.exceptions import ActorDiedError

        with self._lock:
            groups = dict(self.groups)
            spares = list(self.spares)
        asked = time.time()
        refs = {gid: g["actor"].stats.remote() for gid, g in groups.items()}
        spare_refs = {gid: a.stats.remote() for gid, a in spares}
        every = list(refs.values()) + list(spare_refs.values())
        timeout = max(1.0, 2 * (self.fleet or {}).get("poll_s", 0.5))
        ready, _ = ray.wait(every, num_returns=len(every), timeout=timeout) if every else ([], [])
        ready = set(ready)
        dead: dict[str, str] = {}  # group id -> why
        answers: dict[str, dict] = {}
        for gid, ref in [*refs.items(), *spare_refs.items()]:
            if ref not in ready:
                continue  # busy or starting: no news is not death
            try:
                answers[gid] = ray.get(ref)
            except ActorDiedError as e:  # Ray declared it dead (its process or its node)
                dead[gid] = "start failed" if getattr(e, "actor_init_failed", False) else "died"
            except Exception:  # ActorUnavailableError and the like: maybe back later, not dead
                continue
        got = time.time()
        with self._lock:
            self.spares = [(g, a) for g, a in self.spares if g not in dead]
            for gid in [g for g in dead if g in spare_refs]:
                self._log("spare died", group=gid)
            for gid, st in answers.items():
                g = self.groups.get(gid)
                if g is None:
                    continue
                g["node"] = st["node"]
                offset = st["now"] - (asked + got) / 2  # the group's clock minus ours
                self._take_events(st, st["node"])
                failed = self._start_failure(g)
                if failed or (st["started"] and not st["running"]):
                    dead[gid] = failed or f"pipeline ended: {st.get('error') or 'its sources ended'}"
                for cid, cs in st["cameras"].items():
                    cam = self.cameras.get(cid)
                    if cam is None or cam.group != gid:
                        continue
                    cam.current, cam.node = cs, st["node"]
                    if cs["last_out"] is not None:
                        cam.last_out = cs["last_out"] - offset
                    if cam.down and cs["first_out"] is not None:
                        o = cam.close_outage(cs["first_out"] - offset)
                        cam.attempts, cam.error = 0, None
                        self._log("recovered", camera=cid, group=gid, outage_s=o["s"])
            self._replace([g for g in dead if g in self.groups], dead)
            due = [self.cameras[c] for c in self.waiting if c in self.cameras and self.cameras[c].retry_at <= time.time()]
            if due:
                self.waiting = [c for c in self.waiting if c not in {d.id for d in due}]
                self._place(due)
            if len(self.spares) < (self.fleet or {}).get("spare_actors", 0):
                self._place([])

    def _start_failure(self, g: dict) -> str | None:
        """The error of a group's start() when it raised (a pipeline that cannot start), else None."""
        import ray

        if g.get("started") is None:
            return None
        done, _ = ray.wait([g["started"]], timeout=0)
        if not done:
            return None
        g["started"] = None
        try:
            ray.get(done[0])
        except Exception as e:
            g["error"] = f"start failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
            return g["error"]
        return None

    def _replace(self, gids: list[str], why: dict[str, str]) -> None:
        """Groups that are gone (lock held): killed for sure, their cameras placed anew; a camera
        whose group failed to start waits (2 s, doubling to 60 s) before its next try."""
        import ray

        moved, now = [], time.time()
        for gid in gids:
            g = self.groups.pop(gid)
            with contextlib.suppress(Exception):
                ray.kill(g["actor"], no_restart=True)  # dead already, or made so: never two at once
            self._log("died", group=gid, node=g["node"], cameras=g["cameras"], why=why[gid])
            for cid in g["cameras"]:
                cam = self.cameras.get(cid)
                if cam is None:
                    continue
                cam.retire(lost=True)
                cam.open_outage(now, why[gid], gid)
                if why[gid].startswith(("start failed", "pipeline ended")):
                    cam.attempts += 1
                    cam.error = why[gid]
                    cam.retry_at = now + min(RETRY_S[1], RETRY_S[0] * 2 ** (cam.attempts - 1))
                moved.append(cam)
        if moved:
            self._place(moved)

    def _take_events(self, st: dict, node: str | None) -> None:
        """A group's new analytics events into the fleet's one stream (lock held)."""
        for e in st.get("events") or []:
            self.camera_events.append({**e, "camera": e["stream"], "node": node})
            self.camera_events_n += 1
            self.camera_events_by[(e["stream"], e["type"])] += 1
        self.camera_events_missed += st.get("events_missed", 0)

    def events_since(self, n: int) -> tuple[list[dict], int]:
        """Camera events after the first `n` (a reader's cursor), and the cursor for the next call;
        events older than the last 10,000 are gone."""
        with self._lock:
            fresh = min(self.camera_events_n - n, len(self.camera_events))
            return (list(self.camera_events)[-fresh:] if fresh > 0 else []), self.camera_events_n

    def _log(self, what: str, **kw) -> None:
        self.events.append({"t": round(time.time(), 3), "event": what, **kw})
        del self.events[:-500]
        log.info("fleet: %s %s", what, kw)

    def snapshot(self) -> dict:
        with self._lock:
            cams = {cid: c.view() for cid, c in sorted(self.cameras.items())}
            groups = {
                gid: {"cameras": g["cameras"], "node": g["node"], "error": g.get("error")} for gid, g in self.groups.items()
            }
            by: dict[str, dict[str, int]] = {}
            for (cam, kind), n in sorted(self.camera_events_by.items()):
                by.setdefault(cam, {})[kind] = n
            return {
                "cameras": cams,
                "groups": groups,
                "spares": [g for g, _ in self.spares],
                "events": list(self.events),
                "camera_events": {"by_camera": by, "total": self.camera_events_n, "missed": self.camera_events_missed},
            }

    def stop(self) -> dict:
        """Stop polling (no placement after this), then every group at once; the final figures."""
        import ray

        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
        with self._lock:
            groups, spares = dict(self.groups), list(self.spares)
            self.groups, self.spares = {}, []
        finals = self._stop_groups(groups)
        with self._lock:
            for gid, g in groups.items():
                st = finals.get(gid) or {}
                self._take_events(st, g["node"])
                for cid in g["cameras"]:
                    cam = self.cameras.get(cid)
                    if cam is not None:
                        cam.current = (st.get("cameras") or {}).get(cid, cam.current)
            snap = self.snapshot()
        for actor in [g["actor"] for g in groups.values()] + [a for _, a in spares]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        return snap


# one view: /metrics and /stats ------------------------------------------------------------------
def metrics_text(snap: dict) -> str:
    """The fleet's figures in Prometheus' text format, one series per camera."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Fleet:
        def collect(self):
            lab = ["camera"]  # a camera's counters stay one series when it moves; where it runs: camera_node
            node = GaugeMetricFamily("streamseg_fleet_camera_node", "The node carrying each camera", labels=["camera", "node"])
            fin = CounterMetricFamily("streamseg_fleet_frames_in", "Frames each camera produced", labels=lab)
            fout = CounterMetricFamily("streamseg_fleet_frames_out", "Frames each camera got out", labels=lab)
            drop = CounterMetricFamily(
                "streamseg_fleet_frames_dropped", "Frames dropped, by reason", labels=[*lab, "reason"]
            )
            lost = CounterMetricFamily(
                "streamseg_fleet_outage_frames", "Frames missed while a camera had no live group", labels=lab
            )
            outs = CounterMetricFamily("streamseg_fleet_outages", "Outages (its group or node died)", labels=lab)
            out_s = CounterMetricFamily("streamseg_fleet_outage_seconds", "Seconds without a live group", labels=lab)
            rec = CounterMetricFamily("streamseg_fleet_reconnects", "Source reconnects", labels=lab)
            lat = GaugeMetricFamily(
                "streamseg_fleet_e2e_latency_seconds", "End-to-end latency of recent frames", labels=[*lab, "percentile"]
            )
            up = GaugeMetricFamily("streamseg_fleet_camera_up", "1 while the camera has a live group", labels=lab)
            ev = CounterMetricFamily("streamseg_fleet_events", "Analytics events raised", labels=["camera", "type"])
            for cam, kinds in (snap.get("camera_events") or {}).get("by_camera", {}).items():
                for kind, n in kinds.items():
                    ev.add_metric([cam, kind], n)
            for cid, c in snap["cameras"].items():
                lv = [cid]
                if c["node"]:
                    node.add_metric([cid, c["node"]], 1.0)
                f = c["frames"]
                fin.add_metric(lv, f["in"])
                fout.add_metric(lv, f["out"])
                for r, n in sorted(f["dropped"].items()):
                    drop.add_metric([*lv, r], n)
                lost.add_metric(lv, f["outage"])
                outs.add_metric(lv, len(c["outages"]))
                out_s.add_metric(lv, c["outage_s"])
                rec.add_metric(lv, c["reconnects"])
                for q in ("p50", "p99"):
                    if c["e2e_ms"][q] is not None:
                        lat.add_metric([*lv, q[1:]], c["e2e_ms"][q] / 1000)
                up.add_metric(lv, 0.0 if c["down"] else 1.0)
            yield from (node, fin, fout, drop, lost, outs, out_s, rec, lat, up, ev)

    reg = CollectorRegistry()
    reg.register(_Fleet())
    return generate_latest(reg).decode()


def serve_http(addr: str, snapshot, stack: contextlib.ExitStack) -> None:
    """/metrics and /stats of the fleet at HOST:PORT, on a thread, until the stack closes."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, _, port = addr.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path not in ("/metrics", "/stats"):
                self.send_error(404)
                return
            try:
                snap = snapshot()
            except Exception as e:  # the controller busy or gone: say so, no traceback
                self.send_error(503, f"fleet controller: {type(e).__name__}")
                return
            if path == "/metrics":
                body, ctype = metrics_text(snap).encode(), "text/plain; version=0.0.4"
            else:
                body, ctype = json.dumps(snap).encode(), "application/json"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    try:
        srv = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    except OSError as e:
        raise UserError(f"cannot listen on {addr}: {e.strerror or e}") from None
    threading.Thread(target=srv.serve_forever, name="fleet-http", daemon=True).start()
    stack.callback(srv.server_close)
    stack.callback(srv.shutdown)


def controller(ray):
    """The fleet's one controller: found by name, or made (detached: it outlives this process)."""
    cls = ray.remote(FleetController).options(
        name=CONTROLLER,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_concurrency=8,
        num_cpus=0,
        # on the head node, which the cluster cannot lose anyway (its GCS is the cluster's memory);
        # a worker node's death must never take the one thing that re-places cameras with it
        resources={"node:__internal_head__": 0.001},
    )
    return cls.remote()


def run_serve(
    fleet_path: str,
    *,
    address: str | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    log_fn=print,
) -> dict:
    """Start (or take over) the fleet, serve its view, follow the fleet file, and on stop write
    the report. Returns the final snapshot. Whatever ends it (a signal, an error), the groups
    and the controller are stopped: a detached fleet never outlives its serve process unseen."""
    try:
        import ray
    except ImportError:
        raise UserError("streamseg serve needs Ray: pip install 'streamseg[fleet]'") from None

    fleet, cfg_data = load_fleet(fleet_path)
    if fleet.report:
        from streamseg.sinks.base import check_writable

        check_writable(Path(fleet.report))
    stop = stop or threading.Event()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False, include_dashboard=False
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    snap: dict = {}
    with contextlib.ExitStack() as stack:
        if started_here:
            stack.callback(ray.shutdown)
        if fleet.metrics:  # bound before anything starts: a taken port is a one-line refusal
            holder: dict = {}
            serve_http(fleet.metrics, lambda: ray.get(holder["ctl"].snapshot.remote(), timeout=10), stack)
        ctl = controller(ray)
        events = EventsFile(fleet.events)
        if fleet.metrics:
            holder["ctl"] = ctl
        try:
            r = ray.get(ctl.apply.remote(fleet.model_dump(), cfg_data))
            log_fn(f"fleet: {len(r['cameras'])} camera(s) placed; /metrics and /stats at http://{fleet.metrics}")
            _follow(fleet_path, ctl, ray, stop, duration_s, log_fn, events)
        finally:
            try:
                snap = ray.get(ctl.stop.remote(), timeout=300)
                events.pull(ctl, ray)  # the last ones, gathered as the groups stopped
            except Exception as e:
                log.error("fleet: stopping the groups: %s", e)
            with contextlib.suppress(Exception):
                ray.kill(ctl, no_restart=True)
            if fleet.report and snap:
                Path(fleet.report).parent.mkdir(parents=True, exist_ok=True)
                Path(fleet.report).write_text(json.dumps(snap, indent=1) + "\n")
    return snap


class EventsFile:
    """The fleet's one stream of analytics events: every camera's, appended to a JSONL file as the
    controller gathers them (each with its camera and node)."""

    def __init__(self, path: str | None) -> None:
        self.path, self.cursor = (Path(path) if path else None), 0

    def pull(self, ctl, ray) -> int:
        if self.path is None:
            return 0
        try:
            events, self.cursor = ray.get(ctl.events_since.remote(self.cursor), timeout=10)
        except Exception:  # the controller busy: the next pull gets them (it keeps the last 10,000)
            return 0
        if events:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        return len(events)


def _follow(fleet_path: str, ctl, ray, stop: threading.Event, duration_s: float | None, log_fn, events) -> None:
    """Until `stop` or `duration_s`: a changed fleet file is applied (only what changed moves);
    the cameras' events go to the fleet's events file."""

    def mtime() -> float | None:
        try:
            return Path(fleet_path).stat().st_mtime
        except OSError:  # an editor's atomic save: the file is back in a moment
            return None

    seen, t_end = mtime(), (time.monotonic() + duration_s if duration_s else math.inf)
    while not stop.wait(0.5) and time.monotonic() < t_end:
        events.pull(ctl, ray)
        m = mtime()
        if m is None or m == seen:
            continue
        seen = m
        try:
            fleet, cfg_data = load_fleet(fleet_path)
            r = ray.get(ctl.apply.remote(fleet.model_dump(), cfg_data), timeout=120)
        except UserError as e:
            log_fn(f"fleet file not applied: {e}")
            continue
        except Exception as e:  # the controller busy: the next change (or this one again) is tried
            log_fn(f"fleet file not applied: {type(e).__name__}: {e}")
            seen = None
            continue
        log_fn(f"fleet file reloaded: placed {r['placed'] or 'nothing new'}, stopped {r['stopped'] or 'nothing'}")
