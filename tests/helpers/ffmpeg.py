"""FFmpeg's own clients as independent judges of our streams and files (Debian's ffmpeg/ffprobe).

Most players (VLC, ffplay, OBS, NVRs) decode with FFmpeg: a stream FFmpeg reads without an
error or a warning is one they play. Each client runs with `-loglevel repeat+level+verbose`:
every line it prints is tagged with its level, repeats are not folded into "Last message
repeated", and the `[error]` and `[warning]` lines are counted (the verbose ones are kept
for the assertion message).

    with Client.ffmpeg("rtsp://127.0.0.1:8554/live", seconds=10, rtsp_tcp=True) as a: ...
    a.result()  # -> Judged(frames=..., errors=[...], warnings=[...], dts_warnings=[...])
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def ffprobe_path() -> str | None:
    return shutil.which("ffprobe")


def available() -> bool:
    return ffmpeg_path() is not None and ffprobe_path() is not None


@dataclass
class Judged:
    """What one client saw: frames it decoded, and every error/warning line it printed."""

    command: list[str]
    returncode: int | None
    frames: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_pts: list[float] = field(default_factory=list)  # ffprobe: pts of each key frame
    pts: list[float] = field(default_factory=list)  # ffprobe: pts of each frame
    log: str = ""  # everything the client printed on stderr

    @property
    def dts_warnings(self) -> list[str]:
        return [x for x in self.errors + self.warnings if "dts" in x.lower()]

    @property
    def problems(self) -> list[str]:
        """Every error and warning line: a clean stream makes a client print none."""
        return self.errors + self.warnings

    @property
    def split_keyframes(self) -> int:
        """Key frames sharing their pts with another (one keyframe decoded as two halves)."""
        return len(self.key_pts) - len(set(self.key_pts))

    @property
    def pts_monotonic(self) -> bool:
        return all(b > a for a, b in zip(self.pts, self.pts[1:], strict=False))

    def summary(self) -> str:
        """One paragraph for an assertion message: counts, the first problems, the log around the first."""
        name = Path(self.command[0]).name
        head = f"{name}: {self.frames} frames, {len(self.errors)} errors, {len(self.warnings)} warnings"
        lines = self.log.splitlines()
        first = next((i for i, x in enumerate(lines) if x.strip().startswith(("[error]", "[warning]"))), None)
        around = "\n".join(lines[max(0, first - 15) : first + 3]) if first is not None else ""
        return "; ".join([head, *self.problems[:6]]) + ("\n" + around if around else "")


def _split_log(stderr: str) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("[error]") or line.startswith("[fatal]") or line.startswith("[panic]"):
            errors.append(line)
        elif line.startswith("[warning]"):
            warnings.append(line)
    return errors, warnings


def input_args(url: str, rtsp_tcp: bool = True) -> list[str]:
    """Input options for `url`: RTSP over TCP interleaving, or an SDP file for RTP."""
    if url.startswith("rtsp://"):
        return (["-rtsp_transport", "tcp"] if rtsp_tcp else []) + ["-i", url]
    if url.endswith(".sdp"):
        return ["-protocol_whitelist", "file,udp,rtp", "-i", url]
    return ["-i", url]


class Client:
    """One ffmpeg or ffprobe process reading `url` in the background; result() waits for it."""

    def __init__(self, command: list[str], timeout_s: float, probe: bool) -> None:
        self.command = command
        self.timeout_s = timeout_s
        self.probe = probe
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._result: Judged | None = None

    @classmethod
    def ffmpeg(cls, url: str, seconds: float = 10, rtsp_tcp: bool = True, timeout_s: float | None = None) -> Client:
        """`ffmpeg -i URL -t SECONDS -f null -`: decodes every frame, as a player would."""
        cmd = [ffmpeg_path() or "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "repeat+level+verbose"]
        cmd += input_args(url, rtsp_tcp) + ["-t", str(seconds), "-f", "null", "-progress", "pipe:1", "-"]
        return cls(cmd, timeout_s or seconds + 30, probe=False)

    @classmethod
    def ffprobe(cls, url: str, seconds: float = 10, rtsp_tcp: bool = True, timeout_s: float | None = None) -> Client:
        """`ffprobe -show_frames` over the first SECONDS of the stream (every frame decoded)."""
        cmd = [ffprobe_path() or "ffprobe", "-hide_banner", "-loglevel", "repeat+level+verbose"]
        stream = url.startswith(("rtsp://", "rtp://")) or url.endswith(".sdp")
        cmd += ["-read_intervals", f"%+{seconds}"] if stream else []
        cmd += ["-select_streams", "v:0", "-show_entries", "frame=pts_time,key_frame", "-of", "json"]
        cmd += input_args(url, rtsp_tcp)
        return cls(cmd, timeout_s or seconds + 30, probe=True)

    def result(self) -> Judged:
        if self._result is not None:
            return self._result
        try:
            out, err = self.proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        errors, warnings = _split_log(err)
        if self.probe:
            try:
                frames = json.loads(out or "{}").get("frames", [])
            except json.JSONDecodeError:
                frames = []
            pts = [float(f["pts_time"]) for f in frames if "pts_time" in f]
            keys = [float(f["pts_time"]) for f in frames if f.get("key_frame") == 1 and "pts_time" in f]
            n = len(frames)
        else:
            counts = [int(line.split("=", 1)[1]) for line in out.splitlines() if line.startswith("frame=")]
            n, pts, keys = (counts[-1] if counts else 0), [], []
        self._result = Judged(self.command, self.proc.returncode, n, errors, warnings, keys, pts, err)
        return self._result

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def probe_format(path: Path | str) -> dict:
    """ffprobe's `-show_format -show_streams` of a file, as a dict (duration, nb_frames, ...)."""
    r = subprocess.run(
        [ffprobe_path() or "ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(r.stdout or "{}")


def decode_file(path: Path | str, timeout_s: float = 120) -> Judged:
    """`ffmpeg -i FILE -f null -`: every frame of a file decoded, errors counted."""
    c = Client(
        [ffmpeg_path() or "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "repeat+level+verbose", "-i", str(path)]
        + ["-f", "null", "-progress", "pipe:1", "-"],
        timeout_s,
        probe=False,
    )
    return c.result()


def write_sdp(path: Path, port: int, host: str = "127.0.0.1", payload: int = 96) -> Path:
    """The SDP a receiver of our `rtp://HOST:PORT` sink needs (H.264, payload 96, 90 kHz)."""
    path.write_text(
        "v=0\n"
        f"o=- 0 0 IN IP4 {host}\n"
        "s=streamseg\n"
        f"c=IN IP4 {host}\n"
        "t=0 0\n"
        f"m=video {port} RTP/AVP {payload}\n"
        f"a=rtpmap:{payload} H264/90000\n"
        f"a=fmtp:{payload} packetization-mode=1\n"
    )
    return path
