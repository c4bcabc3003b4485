"""Security properties that a code scan can hold the package to (bandit runs in `make test` too)."""

import ast
import json

import pytest

from tests.conftest import ROOT, free_port, run_streamseg

UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "joblib"}


def package_files():
    return sorted((ROOT / "streamseg").rglob("*.py"))


def test_no_pickle_no_torch_load_no_eval_no_unsafe_yaml():
    problems = []
    for path in package_files():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                problems += [f"{rel}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
                if name in ("eval", "exec") and not owner:
                    problems.append(f"{rel}:{node.lineno} calls {name}()")
                if owner == "torch" and name == "load":
                    problems.append(f"{rel}:{node.lineno} torch.load")
                if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                    problems.append(f"{rel}:{node.lineno} yaml.{name} (use safe_load)")
                if name == "load" and owner in ("np", "numpy"):
                    if any(k.arg == "allow_pickle" for k in node.keywords):
                        problems.append(f"{rel}:{node.lineno} np.load(allow_pickle=...)")
    assert not problems, problems


def test_network_sinks_default_to_loopback():
    from streamseg.sinks import open_sink

    assert open_sink("http://:8080").host == "127.0.0.1"
    rtsp = open_sink("rtsp://:8554/live")
    assert rtsp.host == "127.0.0.1"


# secrets in URIs: `redact` is what logs, reports, errors and pages print -------------------
REDACTED = [
    ("http://127.0.0.1:8080?token=abc", "http://127.0.0.1:8080?token=***"),
    ("http://127.0.0.1:8080/?token=abc&max_clients=3", "http://127.0.0.1:8080/?token=***&max_clients=3"),
    ("http://h:1?token=abc&token=def", "http://h:1?token=***&token=***"),
    ("http://h:1?token=", "http://h:1?token=***"),
    ("http://h/x?a=1&TOKEN=abc#top", "http://h/x?a=1&TOKEN=***#top"),
    ("https://x/y?api_key=zz&access_token=qq&password=pp", "https://x/y?api_key=***&access_token=***&password=***"),
    ("rtsp://user:pass@cam.local/stream", "rtsp://user:***@cam.local/stream"),
    ("RTSP://user:pass@cam.local:554/s?key=k1", "RTSP://user:***@cam.local:554/s?key=***"),
    ("rtsp://u:p@ss@host:554/x", "rtsp://u:***@host:554/x"),  # an @ in the password
    ("http://u:pw@h:1?token=t", "http://u:***@h:1?token=***"),
]
UNCHANGED = [
    "rtsp://user@cam.local/stream",  # a user name alone is no secret
    "http://127.0.0.1:8080?max_clients=3&read_timeout_s=2",
    "synthetic://driving?size=640x360&fps=15&seed=3",
    "out/results.jsonl",
    "/dev/video0",
    "http://h/x?tokens=1&mytoken=2",  # names that only contain a secret's name
]


@pytest.mark.parametrize("uri, shown", REDACTED + [(u, u) for u in UNCHANGED])
def test_redact_hides_passwords_and_tokens(uri, shown):
    from streamseg.sources import redact

    assert redact(uri) == shown
    assert redact(shown) == shown  # idempotent: a redacted URI stays as it is


@pytest.mark.parametrize(
    "desc, shown",
    [
        (
            "gst://rtspsrc location=rtsp://u:hunter2@cam/x ! decodebin ! videoconvert ! appsink",
            "gst://rtspsrc location=rtsp://u:***@cam/x ! decodebin ! videoconvert ! appsink",
        ),
        (
            "gst://rtspsrc location=rtsp://cam/x user-id=u user-pw=hunter2 ! decodebin ! appsink",
            "gst://rtspsrc location=rtsp://cam/x user-id=u user-pw=*** ! decodebin ! appsink",
        ),
        (
            'gst://souphttpsrc location="https://cam/live?token=hunter2" ! decodebin ! appsink',
            'gst://souphttpsrc location="https://cam/live?token=***" ! decodebin ! appsink',
        ),
        (
            "gst://rtspsrc location=rtsp://u:p@ss@cam/x ! decodebin ! appsink",  # an @ in the password
            "gst://rtspsrc location=rtsp://u:***@cam/x ! decodebin ! appsink",
        ),
        ("gst://videotestsrc ! appsink", "gst://videotestsrc ! appsink"),
    ],
)
def test_redact_hides_credentials_inside_a_gst_pipeline(desc, shown):
    from streamseg.sources import redact

    assert redact(desc) == shown
    assert redact(shown) == shown


def test_no_token_in_the_report_or_output_of_a_real_run(tmp_path, tiny):
    """Two previews, one with its token in the URI and one with `token:` in the config: the
    run's report, its stdout/stderr and its results name neither token."""
    p1, p2 = free_port(), free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"""
sources: ["synthetic://driving?size=160x90&fps=20&seed=1&frames=15"]
engines:
  semantic: {{card: {tiny / "red.yaml"}, threads: 1}}
sinks:
  - {{uri: "http://127.0.0.1:{p1}", token: CONFIG-SECRET-1}}
  - "http://127.0.0.1:{p2}?token=URI-SECRET-2&read_timeout_s=3"
  - {tmp_path / "out.jsonl"}
metrics: {{report: {tmp_path / "report.json"}, progress: false}}
"""
    )
    r = run_streamseg("run", "-c", cfg)  # from the checkout: this checkout's streamseg is the one run
    assert r.returncode == 0, r.stderr
    report = (tmp_path / "report.json").read_text()
    for text in (report, r.stdout, r.stderr, (tmp_path / "out.jsonl").read_text()):
        assert "SECRET" not in text
    sinks = json.loads(report)["sinks"]
    assert sinks[f"http://127.0.0.1:{p2}?token=***&read_timeout_s=3"]["token"] is True
    assert sinks[f"http://127.0.0.1:{p1}"]["token"] is True
    assert "(token required)" in r.stderr


def test_a_password_in_a_source_uri_stays_out_of_the_error_line(tmp_path, tiny):
    port = free_port()  # nothing listens there: the source cannot open
    r = run_streamseg(
        "run",
        "--source",
        f"rtsp://user:hunter2@127.0.0.1:{port}/cam?token=tok3n",
        "--semantic",
        tiny / "red.yaml",
        "--sink",
        "null://",
        "--no-progress",
        timeout=120,
    )
    assert r.returncode == 2
    assert "hunter2" not in r.stderr + r.stdout and "tok3n" not in r.stderr + r.stdout
    assert f"rtsp://user:***@127.0.0.1:{port}/cam?token=***" in r.stderr
    assert "Traceback" not in r.stderr
