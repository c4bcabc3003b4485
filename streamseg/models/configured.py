"""Open a model from its typed engine config: every caller (bench, eval, the pipeline) passes
the same fields, so none drops a threshold or a hint on the way."""

from __future__ import annotations

from streamseg.config import EngineConfig
from streamseg.models import SegModel, open_model


def open_configured(
    ec: EngineConfig, *, task: str | None = None, cache_dir: str | None = None, engine_options: dict | None = None
) -> SegModel:
    """The (unloaded) model an `engines.<task>` section describes; enter it to load the engine."""
    return open_model(
        ec.card,
        backend=ec.backend,
        precision=ec.precision,
        threads=ec.threads,
        task=task,
        conf_threshold=ec.conf_threshold,
        iou_threshold=ec.iou_threshold,
        max_detections=ec.max_detections,
        hint=ec.hint,
        fuse=ec.fuse,
        nms=ec.nms,
        cache_dir=cache_dir,
        engine_options=engine_options,
    )
