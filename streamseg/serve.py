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
    if fleet.cameras_per_actor is None:
        fleet.cameras_per_actor = density_cameras(fleet.density, path)
    return fleet, cfg.model_dump()


def density_cameras(density: str | None, fleet_path: Path) -> int:
    """Cameras per group from a `bench --streams` result: its first profile's best one-process density."""
    if density is None:
        raise ConfigError(f"{fleet_path}: cameras_per_actor is null, so `density` must name a density.json")
    p = Path(density) if Path(density).is_absolute() else fleet_path.parent / density
    try:
        prof = json.loads(p.read_text())["density"]["profiles"][0]
        n = max(v["density"] for v in prof["variants"] if v["variant"].startswith("streamseg ("))
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ConfigError(f"{fleet_path}: density {p}: not a `streamseg bench --streams` result ({e})") from None
    if n < 1:
        raise ConfigError(f"{fleet_path}: density {p}: this machine kind carried no camera at the bounds")
    return n


def group_config(cfg_data: dict, cameras: list[dict]) -> dict:
    """The pipeline config of one group: its cameras as live sources; each sink whose path has
    {camera} becomes one sink per camera taking only that camera's stream."""
    sinks = []
    for sc in cfg_data.get("sinks") or [{"uri": "null://"}]:
        if "{camera}" in sc["uri"]:
            sinks += [{**sc, "uri": sc["uri"].format(camera=c["id"]), "streams": [c["id"]]} for c in cameras]
        else:
            sinks.append(sc)
    sources = [{**c.get("overrides", {}), "uri": c["uri"], "id": c["id"], "mode": "live"} for c in cameras]
    metrics = {**(cfg_data.get("metrics") or {}), "progress": False, "summary": False, "prometheus": None}
    return {**cfg_data, "sources": sources, "sinks": sinks, "metrics": metrics, "max_frames": None}


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
        self._wall_minus_perf = time.time_ns() - time.perf_counter_ns()  # perf_counter -> wall clock

    def start(self, cfg_data: dict, cameras: list[dict]) -> str:
        from streamseg.pipeline import Pipeline

        self.cameras = [c["id"] for c in cameras]
        self.pipe = Pipeline(validate_config(group_config(cfg_data, cameras)))
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
        return {
            "group": self.group_id,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": __import__("os").getpid(),
            "running": not self.done,
            "error": self.error,
            "fps": live.get("fps"),
            "cameras": cams,
        }

    def stop(self) -> dict:
        if self.pipe is not None:
            self.pipe.stop()
            self._thread.join(timeout=60)
        return self.stats()


# the controller ------------------------------------------------------------------------------
class Camera:
    """What the controller knows of one camera across the groups that carried it."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.group: str | None = None
        self.node: str | None = None
        self.done: dict = {"in": 0, "out": 0, "dropped": {}, "lost_in_flight": 0}  # groups that are gone
        self.current: dict | None = None  # the figures of the group carrying it now
        self.outages: list[dict] = []  # {start, end, s, frames}
        self.outage_start: float | None = None
        self.placed_at: float | None = None

    @property
    def id(self) -> str:
        return self.spec["id"]

    def retire(self, lost: bool) -> None:
        """Its group is gone: what it last reported is kept; frames then in flight are lost."""
        c = self.current or {}
        self.done["in"] += c.get("in", 0)
        self.done["out"] += c.get("out", 0)
        for r, n in (c.get("dropped") or {}).items():
            self.done["dropped"][r] = self.done["dropped"].get(r, 0) + n
        if lost:
            self.done["lost_in_flight"] += c.get("in", 0) - c.get("out", 0) - sum((c.get("dropped") or {}).values())
        self.current = None

    def view(self) -> dict:
        c = self.current or {}
        dropped = dict(self.done["dropped"])
        for r, n in (c.get("dropped") or {}).items():
            dropped[r] = dropped.get(r, 0) + n
        fps = c.get("fps_source") or 0
        outage_s = sum(o["s"] for o in self.outages if o["s"] is not None)
        outage_frames = sum(o["frames"] for o in self.outages) + self.done["lost_in_flight"]
        served_in = self.done["in"] + c.get("in", 0)
        out = self.done["out"] + c.get("out", 0)
        in_flight = c.get("in_flight", 0)
        return {
            "camera": self.id,
            "uri": self.spec["uri"],
            "group": self.group,
            "node": self.node,
            "fps": fps,
            "frames": {
                # the camera's frames: served by a group, or missed while it had none
                "in": served_in + sum(o["frames"] for o in self.outages),
                "out": out,
                "dropped": dropped,
                "in_flight": in_flight,
                "outage": outage_frames,
            },
            "e2e_ms": {"p50": c.get("p50"), "p99": c.get("p99")},
            "reconnects": c.get("reconnects", 0),
            "outages": list(self.outages),
            "outage_s": round(outage_s, 3),
            "down": self.outage_start is not None,
        }


class FleetController:
    """Owns the placement; polls the groups on a thread of its own (a threaded Ray actor)."""

    def __init__(self) -> None:
        self.fleet: dict | None = None
        self.cfg_data: dict | None = None
        self.cameras: dict[str, Camera] = {}
        self.groups: dict[str, dict] = {}  # group id -> {"actor", "cameras", "node"}
        self.spares: list[tuple[str, Any]] = []  # idle groups, their processes up, waiting for cameras
        self._n = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.events: list[dict] = []  # placements, deaths, recoveries (the fleet's own log)

    def apply(self, fleet: dict, cfg_data: dict) -> dict:
        """Make the fleet what `fleet` says: new cameras placed, removed ones stopped, the rest untouched."""
        with self._lock:
            self.fleet, self.cfg_data = fleet, cfg_data
            wanted = {c["id"]: c for c in fleet["cameras"]}
            for cid in [c for c in self.cameras if c not in wanted or wanted[c] != self.cameras[c].spec]:
                self._remove_camera(cid)
            new = [Camera(spec) for cid, spec in wanted.items() if cid not in self.cameras]
            for cam in new:
                self.cameras[cam.id] = cam
            self._place(new)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll_loop, name="fleet-poll", daemon=True)
                self._poller.start()
            return {"placed": [c.id for c in new], "cameras": sorted(self.cameras)}

    def _remove_camera(self, cid: str) -> None:
        """A camera leaves the fleet: its group stops; the group's other cameras are placed anew."""
        import ray

        cam = self.cameras.pop(cid)
        g = self.groups.pop(cam.group, None) if cam.group else None
        if g is None:
            return
        with contextlib.suppress(Exception):
            ray.get(g["actor"].stop.remote(), timeout=30)
        ray.kill(g["actor"], no_restart=True)  # gone before its other cameras go elsewhere
        self._log("stopped", group=cam.group, cameras=g["cameras"])
        rest = [self.cameras[c] for c in g["cameras"] if c in self.cameras]
        for c in rest:
            c.retire(lost=False)
        self._place(rest)

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
        """Each batch of cameras_per_actor cameras goes to a spare group (idle, its process up)
        when one is there, else to a new one; the spares are then topped up again."""
        for batch in chunks(cams, self.fleet["cameras_per_actor"]):
            gid, actor = self.spares.pop(0) if self.spares else self._new_group()
            started = actor.start.remote(self.cfg_data, [c.spec for c in batch])
            self.groups[gid] = {"actor": actor, "cameras": [c.id for c in batch], "node": None, "started": started}
            now = time.time()
            for c in batch:
                c.group, c.node, c.placed_at = gid, None, now
            self._log("placed", group=gid, cameras=[c.id for c in batch])
        while len(self.spares) < self.fleet["spare_actors"]:
            self.spares.append(self._new_group())

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.fleet["poll_s"] if self.fleet else 0.5):
            with contextlib.suppress(Exception):
                self.poll()

    def poll(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        with self._lock:
            refs = {gid: g["actor"].stats.remote() for gid, g in self.groups.items()}
            spares = [(gid, a, a.stats.remote()) for gid, a in self.spares]
        ready, _ = ray.wait([r for *_, r in spares], num_returns=len(spares), timeout=0.5) if spares else ([], [])
        for gid, _actor, ref in spares:  # a spare on a dead node is replaced (it carried no camera)
            if ref in ready:
                try:
                    ray.get(ref)
                except RayActorError:
                    with self._lock:
                        self.spares = [(g, a) for g, a in self.spares if g != gid]
                        self._log("spare died", group=gid)
                        if self.fleet and len(self.spares) < self.fleet["spare_actors"]:
                            self.spares.append(self._new_group())
        timeout = max(1.0, 2 * (self.fleet or {}).get("poll_s", 0.5))
        dead: list[str] = []
        for gid, ref in refs.items():
            try:
                st = ray.get(ref, timeout=timeout)
            except RayActorError:
                dead.append(gid)
                continue
            except GetTimeoutError:  # busy or starting: no news is not death
                continue
            with self._lock:
                g = self.groups.get(gid)
                if g is None:
                    continue
                g["node"] = st["node"]
                if g.get("started") is not None and not st["cameras"]:  # start() not through: did it fail?
                    done, _ = ray.wait([g["started"]], timeout=0)
                    if done:
                        try:
                            ray.get(done[0])
                        except Exception as e:  # a pipeline that cannot start: said, not retried
                            g["error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                            g["started"] = None
                            self._log("failed to start", group=gid, error=g["error"])
                g["error"] = g.get("error") or st.get("error")
                for cid, cs in st["cameras"].items():
                    cam = self.cameras.get(cid)
                    if cam is None or cam.group != gid:
                        continue
                    cam.current, cam.node = cs, st["node"]
                    if cam.outage_start is not None and cs["first_out"] is not None:
                        o = cam.outages[-1]
                        o["end"] = cs["first_out"]
                        o["s"] = round(o["end"] - o["start"], 3)
                        o["frames"] = int(round(o["s"] * (cs["fps_source"] or 0)))
                        cam.outage_start = None
                        self._log("recovered", camera=cid, group=gid, outage_s=o["s"])
        if dead:
            with self._lock:
                moved = []
                for gid in dead:
                    g = self.groups.pop(gid, None)
                    if g is None:
                        continue
                    self._log("died", group=gid, node=g["node"], cameras=g["cameras"])
                    for cid in g["cameras"]:
                        cam = self.cameras.get(cid)
                        if cam is None:
                            continue
                        start = (cam.current or {}).get("last_out") or cam.placed_at or time.time()
                        cam.retire(lost=True)
                        cam.outage_start = start
                        cam.outages.append({"start": start, "end": None, "s": None, "frames": 0, "group": gid})
                        moved.append(cam)
                self._place(moved)

    def _log(self, what: str, **kw) -> None:
        self.events.append({"t": round(time.time(), 3), "event": what, **kw})
        log.info("fleet: %s %s", what, kw)

    def snapshot(self) -> dict:
        with self._lock:
            cams = {cid: c.view() for cid, c in sorted(self.cameras.items())}
            groups = {
                gid: {"cameras": g["cameras"], "node": g["node"], "error": g.get("error")} for gid, g in self.groups.items()
            }
            spares = [gid for gid, _ in self.spares]
        return {"cameras": cams, "groups": groups, "spares": spares, "events": list(self.events)}

    def stop(self) -> dict:
        import ray

        self._stop.set()
        with self._lock:
            groups = dict(self.groups)
        finals = {}
        for gid, g in groups.items():
            try:
                finals[gid] = ray.get(g["actor"].stop.remote(), timeout=60)
            except Exception as e:
                finals[gid] = {"error": f"{type(e).__name__}: {e}"}
        with self._lock:
            for gid, st in finals.items():
                for cid, cs in (st.get("cameras") or {}).items():
                    cam = self.cameras.get(cid)
                    if cam is not None and cam.group == gid:
                        cam.current = cs
            snap = self.snapshot()
        for actor in [g["actor"] for g in groups.values()] + [a for _, a in self.spares]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.groups.clear()
        self.spares.clear()
        return snap


# one view: /metrics and /stats ------------------------------------------------------------------
def metrics_text(snap: dict) -> str:
    """The fleet's figures in Prometheus' text format, one series per camera."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Fleet:
        def collect(self):
            lab = ["camera", "node"]
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
            for cid, c in snap["cameras"].items():
                lv = [cid, c["node"] or ""]
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
            yield from (fin, fout, drop, lost, outs, out_s, rec, lat, up)

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
            if path == "/metrics":
                body, ctype = metrics_text(snapshot()).encode(), "text/plain; version=0.0.4"
            elif path == "/stats":
                body, ctype = json.dumps(snapshot()).encode(), "application/json"
            else:
                self.send_error(404)
                return
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
    the report. Returns the final snapshot."""
    import ray

    fleet, cfg_data = load_fleet(fleet_path)
    stop = stop or threading.Event()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    ctl = controller(ray)
    with contextlib.ExitStack() as stack:
        if started_here:
            stack.callback(ray.shutdown)
        if fleet.metrics:
            serve_http(fleet.metrics, lambda: ray.get(ctl.snapshot.remote(), timeout=10), stack)
        r = ray.get(ctl.apply.remote(fleet.model_dump(), cfg_data))
        log_fn(f"fleet: {len(r['cameras'])} camera(s) placed; /metrics and /stats at http://{fleet.metrics}")
        mtime, t_end = Path(fleet_path).stat().st_mtime, (time.monotonic() + duration_s if duration_s else math.inf)
        while not stop.wait(0.5) and time.monotonic() < t_end:
            m = Path(fleet_path).stat().st_mtime
            if m != mtime:  # the fleet file changed: apply it, touching only what changed
                mtime = m
                try:
                    fleet, cfg_data = load_fleet(fleet_path)
                except UserError as e:
                    log_fn(f"fleet file not applied: {e}")
                    continue
                r = ray.get(ctl.apply.remote(fleet.model_dump(), cfg_data))
                log_fn(f"fleet file reloaded: placed {r['placed'] or 'nothing new'}; cameras {r['cameras']}")
        snap = ray.get(ctl.stop.remote(), timeout=300)
        ray.kill(ctl, no_restart=True)
    if fleet.report:
        Path(fleet.report).parent.mkdir(parents=True, exist_ok=True)
        Path(fleet.report).write_text(json.dumps(snap, indent=1) + "\n")
    return snap
