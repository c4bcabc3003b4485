"""tools/lockfile.py: constraints.txt fits pyproject.toml, and the check `make test` runs fails when it does not."""

import importlib.util
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("lockfile", ROOT / "tools" / "lockfile.py")
lockfile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lockfile)


def test_the_committed_lock_fits_pyproject():
    """What `make test` (and so CI) checks first."""
    assert lockfile.check(ROOT / "constraints.txt", ROOT / "pyproject.toml") == []
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "lockfile.py"), "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pins = lockfile.pins(ROOT / "constraints.txt")
    for name in ("numpy", "onnxruntime", "onnx", "openvino", "nncf", "opencv-python-headless", "ray", "torch"):
        assert name in pins, name


@pytest.fixture
def copies(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "constraints.txt", tmp_path)
    return tmp_path / "constraints.txt", tmp_path / "pyproject.toml"


def test_a_dependency_added_to_pyproject_fails_the_check(copies):
    lock, pyproject = copies
    text = pyproject.read_text()
    pyproject.write_text(text.replace('fleet = ["ray>=2.9"]', 'fleet = ["ray>=2.9", "kornia>=0.7"]'))
    problems = lockfile.check(lock, pyproject)
    assert any("made from other dependency lists" in p for p in problems)
    assert any(p.startswith("kornia (extra fleet: kornia>=0.7) has no pin") for p in problems)


def test_an_extra_the_test_extra_pulls_in_is_checked_too(copies):
    """Someone adds `vision = ["kornia"]` and names it in `test`'s streamseg[...]: its requirement
    must be pinned, though `vision` is not in LOCKED_EXTRAS."""
    lock, pyproject = copies
    text = pyproject.read_text()
    old = next(x for x in text.splitlines() if x.startswith("test = ")).split('"streamseg[')[1].split("]")[0]
    text = text.replace(f'"streamseg[{old}]"', f'"streamseg[{old},vision]"')
    pyproject.write_text(text.replace('fleet = ["ray>=2.9"]', 'fleet = ["ray>=2.9"]\nvision = ["kornia>=0.7"]'))
    lockfile.stamp(lock, pyproject)
    assert lockfile.check(lock, pyproject) == [
        "kornia (extra vision: kornia>=0.7) has no pin in constraints.txt: run `make lock`"
    ]


def test_a_pin_outside_pyprojects_range_fails_the_check_even_with_a_matching_hash(copies):
    lock, pyproject = copies
    pyproject.write_text(pyproject.read_text().replace('"onnxruntime>=1.17"', '"onnxruntime>=1.17,<1.30"'))
    lockfile.stamp(lock, pyproject)  # the header agrees; the pin does not
    pinned = lockfile.pins(lock)["onnxruntime"]
    assert lockfile.check(lock, pyproject) == [
        f"onnxruntime=={pinned} in constraints.txt is outside pyproject.toml's onnxruntime>=1.17,<1.30 "
        "(dependencies): run `make lock`"
    ]


def test_a_hand_edited_or_headerless_lock_fails_the_check(copies):
    lock, pyproject = copies
    lines = [line for line in lock.read_text().splitlines() if not line.startswith("# pyproject-sha256")]
    lock.write_text("\n".join(line for line in lines if not line.startswith("numpy==")) + "\n")
    problems = lockfile.check(lock, pyproject)
    assert any("no `# pyproject-sha256:` header" in p for p in problems)
    assert any(p.startswith("numpy (dependencies: numpy>=1.24) has no pin") for p in problems)


def test_stamp_leaves_the_project_itself_out_of_pip_compiles_output(copies):
    lock, pyproject = copies
    lock.write_text(
        "#\n# pip-compile's header\n#\nnumpy==2.4.6\n    # via streamseg\n"
        "streamseg @ file:///somewhere\n    # via streamseg (pyproject.toml)\nzipp==1.0\n"
    )
    lockfile.stamp(lock, pyproject)
    text = lock.read_text()
    assert "streamseg @" not in text and "pip-compile's header" not in text
    assert "numpy==2.4.6\n    # via streamseg\nzipp==1.0\n" in text
    assert lockfile.HASH_LINE.match(text.splitlines()[4])
