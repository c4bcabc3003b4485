"""Engines opened from the typed engine config carry every field: bench and eval drop nothing."""

from pathlib import Path

import pytest

from streamseg.bench import Bench
from streamseg.config import validate_config
from streamseg.models.configured import open_configured


def _cfg(tiny, backend="onnxruntime"):
    return validate_config(
        {
            "sources": ["synthetic://driving?size=160x90&frames=2"],
            "engines": {
                "semantic": {"card": str(tiny / "red.yaml"), "backend": backend, "threads": 1, "hint": "throughput"},
                "instance": {
                    "card": str(tiny / "yolo.yaml"),
                    "backend": backend,
                    "threads": 1,
                    "conf_threshold": 0.65,
                    "iou_threshold": 0.3,
                    "max_detections": 1,
                    "hint": "throughput",
                },
                "cache_dir": None,
            },
        }
    )


def test_bench_opens_engines_with_the_configs_thresholds(tiny, tmp_path):
    """Before, the bench's engines-only run and naive loop took the card's thresholds."""
    sem, inst = Bench(_cfg(tiny), Path(tmp_path))._models()
    assert inst.thresholds == {"conf": 0.65, "iou": 0.3, "max_det": 1}
    with inst:
        assert (inst.decoder.conf, inst.decoder.iou, inst.decoder.max_det) == (0.65, 0.3, 1)
    assert sem.task == "semantic" and inst.task == "instance"


def test_the_hint_reaches_openvino(tiny, tmp_path):
    pytest.importorskip("openvino")
    sem, _ = Bench(_cfg(tiny, "openvino"), Path(tmp_path))._models()
    assert sem.engine.hint == "THROUGHPUT" and sem.engine.threads == 1


def test_a_card_configured_as_the_other_task_is_refused(tiny):
    from streamseg.errors import ModelError

    ec = _cfg(tiny).engines.instance
    with pytest.raises(ModelError, match="configured as the semantic engine"):
        open_configured(ec, task="semantic")


def test_the_nms_variant_reaches_the_fused_graph(tiny):
    cfg = _cfg(tiny)
    ec = cfg.engines.instance.model_copy(update={"fuse": True, "nms": "static"})
    with open_configured(ec, task="instance") as m:
        assert m.fused and m.describe()["nms"] == "static"
    assert cfg.engines.instance.nms == "dynamic"  # the default


def test_config_refuses_more_detections_than_tensorrts_topk_in_one_line():
    from streamseg.config import ConfigError
    from streamseg.models.fuse import TRT_TOPK_MAX

    engine = {"card": "x.yaml", "backend": "tensorrt", "max_detections": TRT_TOPK_MAX}
    assert validate_config({"engines": {"instance": engine}}).engines.instance.max_detections == TRT_TOPK_MAX
    with pytest.raises(ConfigError) as e:
        validate_config({"engines": {"instance": {**engine, "max_detections": TRT_TOPK_MAX + 1}}})
    assert str(e.value).splitlines() == [
        f"config: engines.instance: Value error, max_detections {TRT_TOPK_MAX + 1} is more than TensorRT's TopK takes "
        f"({TRT_TOPK_MAX})"
    ]
    engine = {**engine, "backend": "openvino", "max_detections": TRT_TOPK_MAX + 1}  # the CPU backends take more
    assert validate_config({"engines": {"instance": engine}}).engines.instance.max_detections == TRT_TOPK_MAX + 1
