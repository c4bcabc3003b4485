"""A procedural driving scene seen from a forward-facing car camera, with exact ground truth.

The world is a function of (seed, distance driven): a road of 2-4 lanes that curves
gently, dashed lane markings, kerbs and sidewalks, buildings and trees beyond them,
parked cars along the kerbs, moving cars in the lanes (ours and oncoming), pedestrians
on the sidewalks and crossing the road. Frame t renders the world at the car's position
at time t with a pinhole camera, painting objects far to near, so occlusion is right in
the image, the label map and the instance-id map alike. Light (day, dusk, overcast),
shadows and sensor noise vary by seed.

Everything is drawn with cv2.fillPoly and friends on three arrays at once; a 1280x720
frame with its ground truth takes a few ms on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# what a frame shows for a seed changes with this: caches of rendered frames are keyed by it
# (2: the solid edge lines drawn as densely as the road's edges, inside the road on bends)
SCENE_VERSION = 2
LABELS = ["background", "road", "sidewalk", "lane", "car", "person", "sky", "building", "vegetation"]
L = {name: i for i, name in enumerate(LABELS)}
INSTANCE_LABELS = ("car", "person")

CAR_COLORS = [
    (200, 200, 205),
    (30, 30, 35),
    (150, 20, 25),
    (25, 50, 140),
    (110, 112, 118),
    (235, 235, 235),
    (20, 90, 60),
    (180, 140, 40),
    (90, 30, 100),
    (60, 110, 170),
    (170, 80, 20),
    (75, 75, 70),
]  # RGB
CLOTHES = [
    (40, 40, 60),
    (150, 30, 30),
    (30, 80, 150),
    (200, 180, 60),
    (60, 60, 60),
    (220, 220, 220),
    (20, 110, 70),
    (120, 60, 140),
]
SKIN = [(240, 200, 170), (200, 150, 110), (140, 95, 60), (90, 60, 40)]
BUILDING_COLORS = [(150, 130, 110), (180, 170, 150), (120, 110, 105), (170, 120, 90), (200, 190, 170), (100, 100, 110)]

LIGHTS = {
    #            sky top          sky horizon       terrain          brightness  tint (RGB gain)
    "day": ((70, 130, 200), (175, 205, 235), (95, 115, 70), 1.0, (1.0, 1.0, 1.0)),
    "overcast": ((150, 155, 165), (200, 202, 205), (90, 100, 80), 0.85, (0.95, 0.97, 1.0)),
    "dusk": ((45, 40, 90), (240, 140, 80), (60, 55, 50), 0.6, (1.1, 0.85, 0.75)),
}


@dataclass
class _Obj:
    """One thing in the world, placed by its distance along the road."""

    kind: str  # car | person | building | tree
    oid: int  # stable id (instance id = oid for cars and persons)
    s0: float  # position along the road at t=0 (metres)
    x: float  # lateral position relative to the road centre (metres)
    v: float  # own speed along the road (m/s)
    vx: float  # lateral speed (crossing pedestrians)
    rng: np.random.Generator
    params: dict


class DrivingScene:
    """`render(i)` -> (image BGR uint8, label map uint8, instance-id map int32) for frame i."""

    ground_far_m = 220.0  # the road and sidewalks are drawn this far ahead

    def __init__(
        self, size_wh: tuple[int, int] = (1280, 720), fps: float = 30.0, seed: int = 0, people: float = 1.0
    ) -> None:
        """`people` scales how many pedestrians walk and cross (training draws more of them than the
        evaluated scenes hold: they are the rarest class); 1.0 is the scene every source shows."""
        self.w, self.h = size_wh
        self.people = people
        self.fps = fps
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.light = ["day", "day", "overcast", "dusk"][rng.integers(0, 4)]
        self.lanes = int(rng.integers(2, 5))
        self.lane_w = float(rng.uniform(3.2, 3.8))
        self.ego_lane = int(rng.integers(0, self.lanes))
        self.sidewalk_w = float(rng.uniform(2.5, 4.5))
        self.speed = float(rng.uniform(8.0, 16.0))
        self.curve_amp = float(rng.uniform(0.0, 0.0012))
        self.curve_period = float(rng.uniform(150, 400))
        self.cam_h = float(rng.uniform(1.3, 1.6))
        self.focal = self.w * float(rng.uniform(0.75, 0.95))
        self.horizon = self.h * float(rng.uniform(0.40, 0.47))
        self.road_gray = int(rng.integers(70, 110))
        self.noise_sigma = float(rng.uniform(2.0, 7.0))
        self.oncoming = self.lanes >= 3 or bool(rng.integers(0, 2))
        self.world_len = 260.0  # objects repeat along this loop
        self.objs = self._populate(rng)
        self._background = self._make_background()
        nrng = np.random.default_rng(seed + 7919)
        self._noise = [
            np.clip(nrng.normal(0, self.noise_sigma, (self.h, self.w, 3)), -40, 40).astype(np.int16) for _ in range(3)
        ]
        self._noise_pos = [np.clip(n, 0, None).astype(np.uint8) for n in self._noise]
        self._noise_neg = [np.clip(-n, 0, None).astype(np.uint8) for n in self._noise]

    # world -----------------------------------------------------------------------
    def _road_edges(self) -> tuple[float, float]:
        """Lateral road edges (left, right) relative to the ego camera's lane centre."""
        left = -(self.ego_lane + 0.5) * self.lane_w
        return left, left + self.lanes * self.lane_w

    def _populate(self, rng: np.random.Generator) -> list[_Obj]:
        objs: list[_Obj] = []
        left, right = self._road_edges()
        oid = 1

        def add(kind, s0, x, v=0.0, vx=0.0, **params):
            nonlocal oid
            objs.append(
                _Obj(kind, oid, s0 % self.world_len, x, v, vx, np.random.default_rng(rng.integers(1 << 31)), params)
            )
            oid += 1

        # buildings and trees beyond the sidewalks
        for side, edge in ((-1, left), (1, right)):
            s = float(rng.uniform(0, 10))
            while s < self.world_len:
                length = float(rng.uniform(8, 25))
                if rng.random() < 0.7:
                    setback = float(rng.uniform(1.0, 6.0))
                    x = edge + side * (self.sidewalk_w + setback)
                    color = BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))]
                    add(
                        "building",
                        s,
                        x,
                        side=side,
                        length=length,
                        height=float(rng.uniform(5, 22)),
                        depth=float(rng.uniform(8, 15)),
                        color=color,
                    )
                else:
                    for k in range(int(rng.integers(1, 4))):
                        add(
                            "tree",
                            s + k * length / 3,
                            edge + side * (self.sidewalk_w + float(rng.uniform(0.5, 3))),
                            height=float(rng.uniform(4, 8)),
                            crown=float(rng.uniform(1.5, 3.0)),
                        )
                s += length + float(rng.uniform(1, 8))
        # parked cars along the kerbs
        for side, edge in ((-1, left), (1, right)):
            s = float(rng.uniform(0, 15))
            while s < self.world_len:
                if rng.random() < 0.55:
                    add("car", s, edge - side * 1.1, **self._car_params(rng))
                s += float(rng.uniform(5.5, 14))
        # moving cars: ours (same direction) and oncoming in the left lanes
        n_onc = self.lanes // 2 if self.oncoming else 0
        for lane in range(self.lanes):
            x = left + (lane + 0.5) * self.lane_w
            oncoming = lane < n_onc
            for _ in range(int(rng.integers(1, 4))):
                v = -float(rng.uniform(8, 16)) if oncoming else self.speed + float(rng.uniform(-4, 4))
                if lane == self.ego_lane:
                    add(
                        "car",
                        0.0,
                        x,
                        v=self.speed,
                        follow=float(rng.uniform(9, 70)),
                        phase=float(rng.uniform(0, 6.3)),
                        **self._car_params(rng),
                    )
                    continue
                add(
                    "car",
                    float(rng.uniform(6, self.world_len)),
                    x + float(rng.uniform(-0.3, 0.3)),
                    v=v,
                    oncoming=oncoming,
                    **self._car_params(rng),
                )
        # pedestrians: walking on the sidewalks, and crossing
        for _ in range(round(int(rng.integers(6, 14)) * self.people)):
            side, edge = ((-1, left), (1, right))[int(rng.integers(0, 2))]
            x = edge + side * float(rng.uniform(0.4, self.sidewalk_w - 0.4))
            add(
                "person",
                float(rng.uniform(0, self.world_len)),
                x,
                v=float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.8)),
                **self._person_params(rng),
            )
        for _ in range(round(int(rng.integers(1, 4)) * self.people)):
            vx = float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.6))
            add(
                "person",
                float(rng.uniform(10, self.world_len)),
                float(rng.uniform(left, right)),
                vx=vx,
                crossing=(left - 2, right + 2),
                **self._person_params(rng),
            )
        return objs

    @staticmethod
    def _car_params(rng) -> dict:
        kind = rng.choice(["sedan", "sedan", "hatch", "suv", "van", "truck"], p=[0.3, 0.15, 0.2, 0.2, 0.1, 0.05])
        dims = {
            "sedan": (1.8, 1.45, 4.5),
            "hatch": (1.75, 1.5, 3.9),
            "suv": (1.9, 1.75, 4.7),
            "van": (2.0, 2.1, 5.0),
            "truck": (2.4, 3.0, 7.0),
        }[kind]
        jitter = rng.uniform(0.92, 1.08, 3)
        return {
            "width": dims[0] * jitter[0],
            "height": dims[1] * jitter[1],
            "length": dims[2] * jitter[2],
            "shape": str(kind),
            "color": CAR_COLORS[rng.integers(len(CAR_COLORS))],
        }

    @staticmethod
    def _person_params(rng) -> dict:
        return {
            "height": float(rng.uniform(1.5, 1.95)),
            "width": float(rng.uniform(0.45, 0.6)),
            "top": CLOTHES[rng.integers(len(CLOTHES))],
            "legs": CLOTHES[rng.integers(len(CLOTHES))],
            "skin": SKIN[rng.integers(len(SKIN))],
            "phase": float(rng.uniform(0, 2 * math.pi)),
        }

    def _curve(self, z: np.ndarray | float, s: float) -> np.ndarray | float:
        """Lateral offset of the road centre at distance z ahead, when the car is at s."""
        a = self.curve_amp * math.sin(2 * math.pi * s / self.curve_period)
        return a * np.asarray(z) ** 2

    # projection --------------------------------------------------------------------
    def _project(self, x, y_up, z) -> np.ndarray:
        z = np.maximum(np.asarray(z, np.float64), 0.05)
        u = self.w / 2 + self.focal * np.asarray(x) / z
        v = self.horizon + self.focal * (self.cam_h - np.asarray(y_up)) / z
        return np.stack(np.broadcast_arrays(u, v), axis=-1)

    def _pt(self, x: float, y_up: float, z: float) -> tuple[float, float]:
        """One point: the scalar fast path of _project (most calls draw small polygons)."""
        z = max(float(z), 0.05)
        return (self.w / 2 + self.focal * float(x) / z, self.horizon + self.focal * (self.cam_h - float(y_up)) / z)

    def _poly(self, pts: np.ndarray) -> np.ndarray:
        return np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits

    # rendering ------------------------------------------------------------------------
    def _make_background(self) -> tuple[np.ndarray, np.ndarray]:
        top, hor, terrain, bright, tint = LIGHTS[self.light]
        img = np.empty((self.h, self.w, 3), np.float32)
        hz = int(math.ceil(self.horizon))
        ramp = np.linspace(0, 1, hz, dtype=np.float32)[:, None]
        for c in range(3):
            img[:hz, :, c] = top[2 - c] * (1 - ramp) + hor[2 - c] * ramp
            img[hz:, :, c] = terrain[2 - c]
        label = np.full((self.h, self.w), L["background"], np.uint8)
        label[:hz] = L["sky"]
        return np.clip(img, 0, 255).astype(np.uint8), label

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = index / self.fps
        s = self.speed * t
        img, label = (a.copy() for a in self._background)
        inst = np.zeros((self.h, self.w), np.int32)
        self._shapes: dict[int, list[np.ndarray]] = {}
        self._sil: dict | None = None  # silhouettes of this frame's objects, rasterized when first asked
        self._draw_ground(img, label, s)
        for obj, z in self._visible(s, t):
            getattr(self, f"_draw_{obj.kind}")(img, label, inst, obj, z, t, s)
        self._finish(img, index)
        self._inst = inst
        return img, label, inst

    def _silhouettes(self) -> dict[int, tuple[np.ndarray, int, int, int, int]]:
        """Instance id -> (its silhouette with nothing in front, as a bool canvas over its in-frame box,
        the canvas's x0 and y0, its top and lowest row), for the last rendered frame, rasterized once."""
        if self._sil is None:
            self._sil = {}
            for oid, polys in self._shapes.items():
                pts = np.concatenate(polys).reshape(-1, 2) >> 4
                x0, y0 = np.clip(pts.min(0), 0, [self.w, self.h])
                x1, y1 = np.clip(pts.max(0) + 2, 0, [self.w, self.h])
                if x1 <= x0 or y1 <= y0:
                    continue
                canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
                shift = np.array([x0, y0], np.int32) << 4
                for p in polys:  # one at a time: fillPoly over several polygons is even-odd
                    cv2.fillPoly(canvas, [p - shift], 1, cv2.LINE_8, 4)
                self._sil[oid] = (canvas.view(bool), int(x0), int(y0), int(pts[:, 1].min()), int(pts[:, 1].max()))
        return self._sil

    def contact_in_view(self, band: float = 0.15) -> dict[int, float]:
        """Instance id -> the share of its ground contact in view, for the last rendered frame: of the
        pixels its silhouette would cover in its lowest `band` of rows (feet and shins, wheels) with
        nothing in front, how many show. A person whose legs are behind a parked car, its feet
        showing only through the gap under the car's body, is not seen to step anywhere."""
        out = {}
        for oid, (canvas, x0, y0, top, low) in self._silhouettes().items():
            r0 = max(low - max(2, math.ceil(band * (low - top + 1))), y0)
            feet = canvas[r0 - y0 :]
            full = np.count_nonzero(feet)
            if full:
                shown = self._inst[r0 : r0 + feet.shape[0], x0 : x0 + feet.shape[1]] == oid
                out[oid] = float(np.count_nonzero(feet & shown)) / full
        return out

    def full_areas(self) -> dict[int, int]:
        """Instance id -> pixels its silhouette would cover inside the frame with nothing in front,
        for the last rendered frame. Visible area / full area = how much of it is not occluded."""
        return {oid: int(np.count_nonzero(sil[0])) for oid, sil in self._silhouettes().items()}

    def _fill(self, img, label, inst, pts, color_rgb, lab: int | None, oid: int = 0, shade: float = 1.0) -> None:
        poly = [self._poly(pts)]
        bright, tint = LIGHTS[self.light][3], LIGHTS[self.light][4]
        bgr = tuple(float(min(255, color_rgb[2 - c] * shade * bright * tint[2 - c])) for c in range(3))
        cv2.fillPoly(img, poly, bgr, cv2.LINE_AA, 4)
        if lab is not None:
            cv2.fillPoly(label, poly, lab, cv2.LINE_8, 4)
            if inst is not None:  # oid 0 clears: a building in front hides the car behind it
                cv2.fillPoly(inst, poly, oid, cv2.LINE_8, 4)
                if oid:
                    self._shapes.setdefault(oid, []).append(poly[0])

    def _draw_ground(self, img, label, s: float) -> None:
        left, right = self._road_edges()
        z = np.geomspace(0.8, self.ground_far_m, 48)
        c = self._curve(z, s)
        g = self.road_gray
        # sidewalks (with a kerb line), then the road over them
        for side_edge, out in ((left, left - self.sidewalk_w), (right, right + self.sidewalk_w)):
            pts = np.concatenate([self._project(side_edge + c, 0, z), self._project(out + c, 0, z)[::-1]])
            self._fill(img, label, None, pts, (150, 148, 140), L["sidewalk"])
            kerb = np.concatenate([self._project(side_edge + c, 0.12, z), self._project(side_edge + c, 0, z)[::-1]])
            self._fill(img, label, None, kerb, (185, 182, 175), L["sidewalk"])
        road = np.concatenate([self._project(left + c, 0, z), self._project(right + c, 0, z)[::-1]])
        self._fill(img, label, None, road, (g, g, g + 3), L["road"])
        # lane markings: solid at the edges, dashed between lanes, moving with the car
        mark_w = 0.15
        for k in range(self.lanes + 1):
            x = left + k * self.lane_w
            if k in (0, self.lanes):
                x += 0.3 if k == 0 else -0.3
                segs = [(0.8, self.ground_far_m)]
            else:
                period, dash = 12.0, 3.0
                first = -(s % period)
                segs = [(a, a + dash) for a in np.arange(first, 220, period) if a + dash > 0.8]
            color = (
                (230, 190, 40) if (self.oncoming and k == self.lanes // 2 and 0 < k < self.lanes) else (235, 235, 230)
            )
            for a, b in segs:
                # sampled as densely as the road's edges: a long solid line drawn as a few chords
                # bows off its curve (on a bend it ran up to half a metre outside the road)
                zz = np.linspace(max(a, 0.8), b, 6) if b - a < 10 else z
                cc = self._curve(zz, s)
                pts = np.concatenate(
                    [self._project(x - mark_w / 2 + cc, 0, zz), self._project(x + mark_w / 2 + cc, 0, zz)[::-1]]
                )
                self._fill(img, label, None, pts, color, L["lane"])

    def _visible(self, s: float, t: float) -> list[tuple[_Obj, float]]:
        out = []
        for o in self.objs:
            if "follow" in o.params:  # a car ahead in our lane: keeps its distance, give or take
                z = o.params["follow"] + 4.0 * math.sin(0.25 * t + o.params["phase"])
            else:
                z = (o.s0 + (o.v - self.speed) * t) % self.world_len - 8.0  # the loop starts behind the car
            if 1.5 < z < 180:
                out.append((o, z))
        out.sort(key=lambda oz: -oz[1])  # far first: near objects paint over far ones
        return out

    def camera(self) -> dict:
        """The pinhole camera the scene is seen through (flat ground, no pitch, principal point at
        the frame's centre column): a ground point x m lateral, z m ahead is seen at column
        w/2 + focal_px * x / z (plus the road's curvature), row horizon_row + focal_px * height_m / z.
        `far_m`: where the drawn road ends."""
        return {"height_m": self.cam_h, "focal_px": self.focal, "horizon_row": self.horizon, "far_m": self.ground_far_m}

    def placements(self, index: int) -> dict[int, tuple[str, float, float, bool]]:
        """Where each car and person in view stands at frame `index`: oid -> (kind, x, z, on_road),
        x metres lateral from the camera's path (the road's curvature taken out), z metres ahead,
        on_road: its ground point between the road's edges. The truth for analytics events."""
        t = index / self.fps
        s = self.speed * t
        left, right = self._road_edges()
        out = {}
        for o, z in self._visible(s, t):
            if o.kind not in ("car", "person"):
                continue
            x = o.x
            if "crossing" in o.params:
                a, b = o.params["crossing"]
                x = a + (x - a + o.vx * t) % (b - a)
            out[o.oid] = (o.kind, float(x), float(z), bool(left <= x <= right))
        return out

    def _draw_building(self, img, label, inst, o: _Obj, z, t, s) -> None:
        p = o.params
        x = o.x + float(self._curve(z, s))
        z1 = z + p["length"]
        xs = x + o.params["side"] * p["depth"]
        facade = np.array(
            [
                self._pt(x, 0, z),
                self._pt(x, 0, z1),
                self._pt(x, p["height"], z1),
                self._pt(x, p["height"], z),
            ]
        )
        front = np.array(
            [
                self._pt(x, 0, z),
                self._pt(xs, 0, z),
                self._pt(xs, p["height"], z),
                self._pt(x, p["height"], z),
            ]
        )
        self._fill(img, label, inst, front, p["color"], L["building"], shade=0.8)
        self._fill(img, label, inst, facade, p["color"], L["building"])
        # rows of windows on the facade, all in one call (image only: they are still building)
        rows, cols = int(p["height"] // 3), int(p["length"] // 3)
        if rows and cols:
            y0 = 1.0 + 3 * np.arange(rows)[:, None].repeat(cols, 1).ravel()
            za = z + 0.8 + 3 * np.arange(cols)[None, :].repeat(rows, 0).ravel()
            corners = np.stack(
                [
                    self._project(x, y0, za),
                    self._project(x, y0, za + 1.2),
                    self._project(x, y0 + 1.2, za + 1.2),
                    self._project(x, y0 + 1.2, za),
                ],
                axis=1,
            )
            bright, tint = LIGHTS[self.light][3], LIGHTS[self.light][4]
            glass = tuple(float(c * bright * tint[2 - i]) for i, c in enumerate((90, 70, 60)))
            cv2.fillPoly(img, list(np.round(corners * 16).astype(np.int32)), glass, cv2.LINE_AA, 4)

    def _draw_tree(self, img, label, inst, o: _Obj, z, t, s) -> None:
        p = o.params
        x = o.x + float(self._curve(z, s))
        trunk = np.array(
            [
                self._pt(x - 0.15, 0, z),
                self._pt(x + 0.15, 0, z),
                self._pt(x + 0.15, p["height"] * 0.6, z),
                self._pt(x - 0.15, p["height"] * 0.6, z),
            ]
        )
        self._fill(img, label, inst, trunk, (90, 65, 40), L["vegetation"])
        cx, cy = self._pt(x, p["height"] - p["crown"] * 0.6, z)
        r = self.focal * p["crown"] / z
        ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        wob = 1 + 0.12 * np.sin(ang * 5 + o.oid)
        crown = np.stack([cx + r * wob * np.cos(ang), cy + r * 0.9 * wob * np.sin(ang)], 1)
        self._fill(img, label, inst, crown, (60, 110, 45), L["vegetation"])

    def _draw_car(self, img, label, inst, o: _Obj, z, t, s) -> None:
        p = o.params
        x = o.x + float(self._curve(z, s))
        w2, hgt, ln = p["width"] / 2, p["height"], p["length"]
        col = p["color"]
        oncoming = p.get("oncoming", False)
        lab, oid = L["car"], o.oid
        # shadow on the ground (image only)
        sh = np.array(
            [
                self._pt(x - w2 - 0.2, 0, z - 0.3),
                self._pt(x + w2 + 0.2, 0, z - 0.3),
                self._pt(x + w2 + 0.2, 0, z + ln),
                self._pt(x - w2 - 0.2, 0, z + ln),
            ]
        )
        self._fill(img, label, inst, sh, (20, 20, 22), None)
        # the side we can see (towards the camera axis), then the face towards us
        side_x = x - w2 if x > 0 else x + w2
        body_h = hgt * (0.55 if p["shape"] != "truck" else 1.0)
        side = np.array(
            [
                self._pt(side_x, 0.25, z),
                self._pt(side_x, 0.25, z + ln),
                self._pt(side_x, body_h, z + ln),
                self._pt(side_x, body_h, z),
            ]
        )
        self._fill(img, label, inst, side, col, lab, oid, shade=0.7)
        if p["shape"] != "truck":
            cab_z0, cab_z1 = z + ln * 0.25, z + ln * (0.75 if p["shape"] != "hatch" else 0.95)
            cabin_side = np.array(
                [
                    self._pt(side_x, body_h, cab_z0 + 0.4),
                    self._pt(side_x, body_h, cab_z1),
                    self._pt(side_x, hgt, cab_z1 - 0.4),
                    self._pt(side_x, hgt, cab_z0 + 0.6),
                ]
            )
            self._fill(img, label, inst, cabin_side, (40, 45, 55), lab, oid)
        for wz in (z + 0.8, z + ln - 0.8):  # wheels
            cx, cy = self._pt(side_x, 0.33, wz)
            r = self.focal * 0.33 / wz
            ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            self._fill(
                img,
                label,
                inst,
                np.stack([cx + r * 0.5 * np.cos(ang), cy + r * np.sin(ang)], 1),
                (15, 15, 15),
                lab,
                oid,
            )
        # face towards us: rear of a car going our way, front of an oncoming one
        back = np.array(
            [
                self._pt(x - w2, 0.2, z),
                self._pt(x + w2, 0.2, z),
                self._pt(x + w2, body_h, z),
                self._pt(x - w2, body_h, z),
            ]
        )
        self._fill(img, label, inst, back, col, lab, oid)
        if p["shape"] != "truck":
            ct = 0.12 * p["width"]
            cab = np.array(
                [
                    self._pt(x - w2 + 0.05, body_h, z + 0.6),
                    self._pt(x + w2 - 0.05, body_h, z + 0.6),
                    self._pt(x + w2 - ct, hgt, z + 1.0),
                    self._pt(x - w2 + ct, hgt, z + 1.0),
                ]
            )
            self._fill(img, label, inst, cab, col, lab, oid, shade=0.9)
            glass = np.array(
                [
                    self._pt(x - w2 + 0.2, body_h + 0.05, z + 0.62),
                    self._pt(x + w2 - 0.2, body_h + 0.05, z + 0.62),
                    self._pt(x + w2 - ct - 0.1, hgt - 0.08, z + 0.98),
                    self._pt(x - w2 + ct + 0.1, hgt - 0.08, z + 0.98),
                ]
            )
            self._fill(img, label, inst, glass, (35, 45, 60), lab, oid)
        light_col = (250, 245, 210) if oncoming else (200, 20, 20)
        for lx in (x - w2 + 0.1, x + w2 - 0.35):
            lamp = np.array(
                [
                    self._pt(lx, body_h - 0.3, z - 0.01),
                    self._pt(lx + 0.25, body_h - 0.3, z - 0.01),
                    self._pt(lx + 0.25, body_h - 0.12, z - 0.01),
                    self._pt(lx, body_h - 0.12, z - 0.01),
                ]
            )
            self._fill(img, label, inst, lamp, light_col, lab, oid)
        plate = np.array(
            [
                self._pt(x - 0.25, 0.35, z - 0.01),
                self._pt(x + 0.25, 0.35, z - 0.01),
                self._pt(x + 0.25, 0.5, z - 0.01),
                self._pt(x - 0.25, 0.5, z - 0.01),
            ]
        )
        self._fill(img, label, inst, plate, (230, 230, 220), lab, oid)

    def _draw_person(self, img, label, inst, o: _Obj, z, t, s) -> None:
        p = o.params
        x = o.x
        if "crossing" in p:
            a, b = p["crossing"]
            x = a + (x - a + o.vx * t) % (b - a)
        x += float(self._curve(z, s))
        hgt, wd = p["height"], p["width"]
        lab, oid = L["person"], o.oid
        swing = math.sin(2 * math.pi * 1.6 * t + p["phase"]) * 0.22
        hip = hgt * 0.52
        for k, sgn in enumerate((-1, 1)):  # legs
            off = sgn * swing
            leg = np.array(
                [
                    self._pt(x - 0.11 + 0.1 * k, hip, z),
                    self._pt(x + 0.01 + 0.1 * k, hip, z),
                    self._pt(x + 0.01 + 0.1 * k + off, 0, z),
                    self._pt(x - 0.11 + 0.1 * k + off, 0, z),
                ]
            )
            self._fill(img, label, inst, leg, p["legs"], lab, oid, shade=0.85 + 0.15 * k)
        torso = np.array(
            [
                self._pt(x - wd / 2, hip - 0.05, z),
                self._pt(x + wd / 2, hip - 0.05, z),
                self._pt(x + wd / 2 - 0.04, hgt * 0.84, z),
                self._pt(x - wd / 2 + 0.04, hgt * 0.84, z),
            ]
        )
        self._fill(img, label, inst, torso, p["top"], lab, oid)
        for sgn in (-1, 1):  # arms
            ax = x + sgn * (wd / 2 + 0.02)
            arm = np.array(
                [
                    self._pt(ax - 0.05, hgt * 0.83, z),
                    self._pt(ax + 0.05, hgt * 0.83, z),
                    self._pt(ax + 0.05 - sgn * swing * 0.4, hgt * 0.47, z),
                    self._pt(ax - 0.05 - sgn * swing * 0.4, hgt * 0.47, z),
                ]
            )
            self._fill(img, label, inst, arm, p["top"], lab, oid, shade=0.85)
        cx, cy = self._pt(x, hgt * 0.92, z)
        r = self.focal * 0.11 / z
        ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        self._fill(
            img, label, inst, np.stack([cx + r * np.cos(ang), cy + r * 1.2 * np.sin(ang)], 1), p["skin"], lab, oid
        )

    def _finish(self, img: np.ndarray, index: int) -> None:
        k = index % len(self._noise)
        cv2.add(img, self._noise_pos[k], dst=img)
        cv2.subtract(img, self._noise_neg[k], dst=img)
