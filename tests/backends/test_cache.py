"""Where built engines are cached (streamseg.backends.cache): the user's cache folder, never the current one."""

from pathlib import Path

import pytest

from streamseg.backends.cache import default_cache_dir
from tests.conftest import checkout_env, run_streamseg


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"STREAMSEG_CACHE_DIR": "/c/mine", "XDG_CACHE_HOME": "/x"}, "/c/mine"),
        ({"XDG_CACHE_HOME": "/x"}, "/x/streamseg"),
        ({"XDG_CACHE_HOME": "relative/x"}, "{home}/.cache/streamseg"),  # the XDG spec: a relative one is ignored
        ({}, "{home}/.cache/streamseg"),
    ],
)
def test_default_cache_dir(monkeypatch, tmp_path, env, expected):
    monkeypatch.delenv("STREAMSEG_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert default_cache_dir() == Path(expected.format(home=tmp_path))


@pytest.mark.parametrize("how", ["xdg", "env", "flag", "config"])
def test_a_run_caches_its_engine_where_told_and_writes_nothing_in_the_current_folder(tmp_path, tiny, how):
    pytest.importorskip("openvino")
    work = tmp_path / "work"
    work.mkdir()
    env = checkout_env()
    env.pop("STREAMSEG_CACHE_DIR", None)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    args = ["run", "--source", "synthetic://driving?size=64x48&frames=2", "--semantic", tiny / "red.yaml"]
    args += ["--backend", "openvino", "--no-progress"]
    expected = {
        "xdg": tmp_path / "xdg" / "streamseg",
        "env": tmp_path / "by-env",
        "flag": tmp_path / "by-flag",
        "config": tmp_path / "by-config",
    }[how]
    if how == "env":
        env["STREAMSEG_CACHE_DIR"] = str(expected)
    elif how == "flag":
        env["STREAMSEG_CACHE_DIR"] = str(tmp_path / "by-env")  # the flag wins over the environment
        args += ["--cache-dir", expected]
    elif how == "config":
        (tmp_path / "c.yaml").write_text(f"engines:\n  cache_dir: {expected}\n")
        args += ["-c", tmp_path / "c.yaml"]
    r = run_streamseg(*args, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert list(work.iterdir()) == []  # no ./engines/cache
    assert list(expected.glob("*.blob")), sorted(p.name for p in tmp_path.rglob("*"))
    assert f"cached in {expected}" in r.stderr
    assert not (tmp_path / "home").exists()


def test_a_cache_dir_with_a_tilde_is_in_the_home_folder(monkeypatch, tmp_path):
    from streamseg.backends.cache import EngineCache

    monkeypatch.setenv("HOME", str(tmp_path))
    assert EngineCache("~/engines").root == tmp_path / "engines"


def test_help_says_where_engines_are_cached():
    for cmd in (["run", "--help"], ["engines", "build", "--help"]):
        r = run_streamseg(*cmd)
        text = " ".join(r.stdout.split())
        assert "$XDG_CACHE_HOME/streamseg" in text and "STREAMSEG_CACHE_DIR" in text, r.stdout


def test_eval_caches_where_told(tmp_path, tiny):
    pytest.importorskip("openvino")
    work = tmp_path / "work"
    work.mkdir()
    r = run_streamseg(
        "eval", tiny / "red.yaml", "--source", "synthetic://driving?size=64x48&frames=2",
        "--cache-dir", tmp_path / "c", cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert list(work.iterdir()) == [] and list((tmp_path / "c").glob("*.blob")), r.stderr
