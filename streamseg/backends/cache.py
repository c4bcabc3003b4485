"""The engine cache: built artifacts (TensorRT plans, OpenVINO blobs, quantized models) in the
user's cache folder (`default_cache_dir()`), keyed by what they were built from, with a
manifest of their sha256.

A key is the hash of: the model file's sha256, the backend and its version, the device,
the precision and the batch profile. Any change gives another key, so a changed model,
runtime or GPU builds anew (and says so). An artifact whose bytes no longer match the
manifest is refused, never loaded: an engine plan is executable code.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from streamseg.errors import BackendError

CACHE_ENV = "STREAMSEG_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where built engines go unless told otherwise: $STREAMSEG_CACHE_DIR, else
    $XDG_CACHE_HOME/streamseg, else ~/.cache/streamseg (the XDG base directory rule), never
    the current folder: a run from anywhere leaves no engines/ behind."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # the spec ignores a relative one
    return base / "streamseg"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    model_sha256: str
    backend: str
    backend_version: str
    device: str
    precision: str
    profile: tuple[tuple[str, str], ...] = ()  # e.g. (("min", "1"), ("opt", "4"), ("max", "8"))

    @property
    def digest(self) -> str:
        blob = json.dumps(
            [self.model_sha256, self.backend, self.backend_version, self.device, self.precision, list(self.profile)],
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def describe(self) -> dict:
        return {
            "model_sha256": self.model_sha256,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "device": self.device,
            "precision": self.precision,
            "profile": dict(self.profile),
        }


class EngineCache:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()  # a config's "~/..."
        self.manifest_path = self.root / "manifest.json"

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive lock on the cache folder (several processes may build at once)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_manifest(self) -> dict:
        if not self.manifest_path.is_file():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BackendError(
                f"engine cache manifest {self.manifest_path} is unreadable ({e}); remove the cache folder to rebuild"
            ) from None
        return data.get("artifacts", {})

    def _write_manifest(self, artifacts: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".manifest-")
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "artifacts": artifacts}, f, indent=2, sort_keys=True)
        os.replace(tmp, self.manifest_path)

    def lookup(self, key: CacheKey) -> Path | None:
        """The verified artifact for `key`, or None when there is none. Raises on tampering."""
        entry = self._read_manifest().get(key.digest)
        if entry is None:
            return None
        path = self.root / entry["file"]
        if not path.is_file():
            return None
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise BackendError(
                f"refusing to load {path}: its sha256 {actual[:12]}... does not match the manifest's "
                f"{entry['sha256'][:12]}... (changed after it was built); delete it to rebuild"
            )
        return path

    def store(self, key: CacheKey, data: bytes, suffix: str, meta: dict | None = None) -> Path:
        """Write an artifact atomically and record it in the manifest."""
        with self._locked():
            name = f"{key.backend}-{key.precision}-{key.digest}{suffix}"
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".build-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.root / name)
            artifacts = self._read_manifest()
            artifacts[key.digest] = {
                "file": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                **key.describe(),
                **(meta or {}),
            }
            self._write_manifest(artifacts)
            return self.root / name

    def entries(self) -> list[dict]:
        return [
            {"key": k, **v} for k, v in sorted(self._read_manifest().items(), key=lambda kv: kv[1].get("created", ""))
        ]


def int8_cache_key(model_path, backend: str) -> CacheKey:
    """Where the engine cache keeps the gated INT8 (Q/DQ) model of `model_path` for `backend`
    (onnxruntime or openvino: the runtime it was judged on, whose version is in the key;
    tensorrt: its symmetric Q/DQ model, made and judged by ONNX Runtime, a key of its own)."""
    if backend == "openvino":
        import openvino as ov

        version = ov.__version__
    else:
        import onnxruntime as ort

        version = ort.__version__
    fmt = "qdq-symmetric" if backend == "tensorrt" else "qdq"
    return CacheKey(sha256_file(model_path), backend, version, "cpu", "int8", (("format", fmt),))


def gated_int8(cache: EngineCache | None, model_path, backend: str) -> Path:
    """The INT8 model that passed the accuracy gate for `backend`, or a BackendError saying how to build it."""
    found = cache.lookup(int8_cache_key(model_path, backend)) if cache is not None else None
    if found is None:
        raise BackendError(
            f"no INT8 model for {Path(model_path).name} in the engine cache: build it with "
            f"`streamseg engines build CARD --backend {backend} --precision int8 --calib URI`"
        )
    return found
