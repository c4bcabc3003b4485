import pytest

from streamseg.config import apply_overrides, load_config, validate_config
from streamseg.errors import ConfigError


@pytest.mark.parametrize(
    "yaml_text, error",
    [
        ("pipeline:\n  batch:\n    max_sise: 4\n", "pipeline.batch.max_sise: unknown key"),
        (
            "pipeline:\n  batch:\n    max_size: 0\n",
            "pipeline.batch.max_size: Input should be greater than or equal to 1",
        ),
        ("pipeline:\n  queue_depth: lots\n", "pipeline.queue_depth: Input should be a valid integer"),
        ("engines:\n  semantic:\n    card: x.yaml\n    bakend: onnxruntime\n", "engines.semantic.bakend: unknown key"),
        ("engines:\n  instance:\n    card: x.yaml\n    backend: cuda\n", "engines.instance.backend: Input should be"),
        ("sources:\n  - uri: a.mp4\n    mode: fast\n", "sources.0.mode: Input should be"),
        ("overlay:\n  alpha: {road: 2}\n", "alpha for 'road' must be within 0..1"),
        ("sinks: out.mp4\n", "sinks: Input should be a valid list"),
        ("colour: red\n", "colour: unknown key"),
        ("- a\n- b\n", "expected a mapping of sections"),
        ("pipeline: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, yaml_text, error):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert error in str(e.value)
    assert str(p) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_shorthands_and_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "sources: [a.mp4, {uri: b.mp4, id: rear, mode: realtime}]\nsinks: [out.mp4]\nengines: {semantic: s.yaml}\n"
    )
    cfg = load_config(p)
    assert [s.uri for s in cfg.sources] == ["a.mp4", "b.mp4"]
    assert cfg.sources[1].id == "rear" and cfg.sources[1].mode == "realtime"
    assert cfg.sinks[0].uri == "out.mp4"
    assert cfg.engines.semantic.card == "s.yaml" and cfg.engines.semantic.backend == "auto"
    assert cfg.engines.instance is None
    assert cfg.pipeline.batch.max_size == 1


def test_overrides_replace_lists_and_set_engine_options():
    cfg = validate_config({"sources": ["a.mp4"], "sinks": ["x.jsonl"], "engines": {"semantic": "s.yaml"}})
    out = apply_overrides(
        cfg,
        sources=["b.mp4", "c.mp4"],
        sinks=["null://"],
        instance="i.yaml",
        backend="onnxruntime",
        max_frames=5,
        report="r.json",
        mode="realtime",
    )
    assert [s.uri for s in out.sources] == ["b.mp4", "c.mp4"]
    assert all(s.mode == "realtime" for s in out.sources)
    assert [s.uri for s in out.sinks] == ["null://"]
    assert out.engines.semantic.backend == "onnxruntime" and out.engines.instance.card == "i.yaml"
    assert out.max_frames == 5 and out.metrics.report == "r.json"
    assert cfg.sources[0].uri == "a.mp4"  # the original is untouched


def test_bad_override_is_a_config_error_naming_the_flag():
    with pytest.raises(ConfigError, match="^--max-frames 0: input should be greater than or equal to 1$"):
        apply_overrides(validate_config({}), max_frames=0)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"pipeline": {"queue_deph": 2}}, "pipeline.queue_deph: unknown key (did you mean 'queue_depth'?)"),
        ({"sinks": [{"uri": "x.mp4", "bitrat_kbps": 9}]}, "sinks.0.bitrat_kbps: unknown key (did you mean 'bitrate_kbps'?)"),
        ({"engines": {"semantic": {"card": "c.yaml", "presicion": "fp16"}}}, "(did you mean 'precision'?)"),
        ({"metrix": {}}, "metrix: unknown key (did you mean 'metrics'?)"),
        ({"pipeline": {"zzzzzz": 1}}, "pipeline.zzzzzz: unknown key"),  # nothing close: no guess
    ],
)
def test_unknown_keys_suggest_the_closest_valid_one(data, message):
    with pytest.raises(ConfigError) as e:
        validate_config(data)
    assert message in str(e.value)
    if "did you mean" not in message:
        assert "did you mean" not in str(e.value)


@pytest.mark.parametrize(
    "config_plot, report, plot, expected",
    [
        ("out/p.png", None, None, "out/p.png"),  # the config's own place, nothing overridden
        ("out/p.png", "d/r.json", None, "d/r.png"),  # the report moved: the plot goes beside it
        ("out/p.png", "d/r.json", "e/q.png", "e/q.png"),  # --plot names its own place
        (None, "d/r.json", None, None),  # a config that does not plot still does not
        (None, None, "e/q.png", "e/q.png"),
    ],
)
def test_plot_follows_the_report(config_plot, report, plot, expected):
    cfg = validate_config({"metrics": {"report": "out/r.json", "plot": config_plot}})
    assert apply_overrides(cfg, report=report, plot=plot).metrics.plot == expected
