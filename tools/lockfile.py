"""constraints.txt: the exact versions `make test` and `make demo` install, and the check that it
still fits pyproject.toml.

    make lock                               # pip-compile (pip-tools), then `stamp`: refresh the lock
    make lock UPGRADE=1                     # the same, every pin moved to the newest that resolves
    python tools/lockfile.py check          # in `make test` (so CI runs it): exit 1 when they disagree

pip-compile resolves pyproject's dependencies and the extras `make test` installs for this
interpreter (CPython 3.11 on Linux x86_64, as CI); `stamp` drops the project itself from its
output (the `test` extra names `streamseg[...]`) and writes a header holding a sha256 of
pyproject's dependency lists. `check` fails when that hash is not the one of today's
pyproject.toml (a dependency added, removed or re-ranged since `make lock`), when a direct
requirement has no pin, or when a pin lies outside pyproject's range.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip's own copy of tomli
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCKED_EXTRAS = ("test", "gst", "openvino", "fleet", "train")  # what `make test` installs
HASH_LINE = re.compile(r"^# pyproject-sha256: ([0-9a-f]{64})\b")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _name(requirement_name: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement_name).lower()


def locked_extras(project: dict) -> list[str]:
    """LOCKED_EXTRAS and every extra they pull in through the project's own name (`test` names
    `streamseg[openvino,fleet,train]`): an extra another helper adds there is locked and checked too."""
    from packaging.requirements import Requirement

    extras, name = project.get("optional-dependencies", {}), _name(project["name"])
    todo, seen = list(LOCKED_EXTRAS), []
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.append(extra)
        for spec in extras.get(extra, []):
            req = Requirement(spec)
            if _name(req.name) == name:
                todo += sorted(req.extras)
    return seen


def dependency_lists(pyproject: Path) -> dict:
    """The parts of pyproject.toml the lock is made from."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "extras": {e: extras.get(e, []) for e in locked_extras(project)},
    }


def digest(pyproject: Path) -> str:
    return hashlib.sha256(json.dumps(dependency_lists(pyproject), sort_keys=True).encode()).hexdigest()


def stamp(lock: Path, pyproject: Path) -> None:
    """Rewrite pip-compile's output as the committed lock: our header, the project itself left out."""
    project = _name(tomllib.loads(pyproject.read_text())["project"]["name"])
    body, skip = [], False
    for line in lock.read_text().splitlines():
        if line.startswith("#") and not body:
            continue  # pip-compile's own header, if any
        if not line.startswith((" ", "#")):
            skip = bool(re.match(r"^([A-Za-z0-9._-]+)\s*@", line)) and _name(line.split("@")[0].strip()) == project
        if not skip and (body or line.strip()):
            # pip-compile names the pyproject by its absolute path: this machine's, nobody else's
            body.append(re.sub(r"\((?:/[^()\s]*)?/pyproject\.toml\)", "(pyproject.toml)", line))
    header = [
        "# The exact versions `make test` and `make demo` install (and CI passes with): CPython 3.11,",
        f"# Linux x86_64, pyproject.toml's dependencies and the extras {', '.join(LOCKED_EXTRAS)}.",
        "# Made by `make lock` (pip-tools' pip-compile, then tools/lockfile.py stamp); do not edit by hand.",
        "# `pip install -e .` still resolves the newest versions pyproject.toml allows.",
        f"# pyproject-sha256: {digest(pyproject)}  (of pyproject.toml's dependency lists; `make test` checks it)",
    ]
    lock.write_text("\n".join(header + body) + "\n")


def pins(lock: Path) -> dict[str, str]:
    return {_name(m[1]): m[2] for line in lock.read_text().splitlines() if (m := PIN.match(line))}


def check(lock: Path, pyproject: Path) -> list[str]:
    """What disagrees between the lock and pyproject.toml, one line each (empty: they agree)."""
    from packaging.requirements import Requirement

    if not lock.is_file():
        return [f"{lock.name} is missing: run `make lock`"]
    problems = []
    text = lock.read_text()
    recorded = next((m[1] for line in text.splitlines() if (m := HASH_LINE.match(line))), None)
    if recorded is None:
        problems.append(f"{lock.name} has no `# pyproject-sha256:` header: run `make lock`")
    elif recorded != digest(pyproject):
        problems.append(
            f"{lock.name} was made from other dependency lists than {pyproject.name}'s today: run `make lock`"
        )
    lists = dependency_lists(pyproject)
    project = _name(tomllib.loads(pyproject.read_text())["project"]["name"])
    pinned = pins(lock)
    if project in pinned or re.search(rf"^{re.escape(project)}\s*@", text, re.M | re.I):
        problems.append(f"{lock.name} pins the project itself: run `make lock`")
    where = [("dependencies", r) for r in lists["dependencies"]]
    where += [(f"extra {e}", r) for e, reqs in lists["extras"].items() for r in reqs]
    for origin, spec in where:
        req = Requirement(spec)
        if _name(req.name) == project:
            continue  # the project's own extras (test pulls openvino, fleet, train)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = pinned.get(_name(req.name))
        if version is None:
            problems.append(f"{req.name} ({origin}: {spec}) has no pin in {lock.name}: run `make lock`")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in {lock.name} is outside {pyproject.name}'s {spec} ({origin}): run `make lock`")
    return problems


def compile_lock(lock: Path, pyproject: Path, *, upgrade: bool = False) -> None:
    """pip-compile (pip-tools) the lock: it resolves through pip, so it sees pip's configuration
    (find-links with torch's CPU build, extra indexes) as `make test`'s install does. Pins already in
    the lock are kept where they still fit (`upgrade`: the newest that resolve instead)."""
    import subprocess

    extras = ",".join(LOCKED_EXTRAS)
    cmd = [sys.executable, "-m", "piptools", "compile", "--quiet", "--no-header", "--no-emit-index-url"]
    cmd += ["--no-emit-find-links", "--allow-unsafe", "--strip-extras", f"--extra={extras}"]
    cmd += ["--output-file", str(lock), str(pyproject)] + (["--upgrade"] if upgrade else [])
    subprocess.run(cmd, check=True, cwd=pyproject.parent)
    stamp(lock, pyproject)


def main(argv: list[str]) -> int:
    lock, pyproject = ROOT / "constraints.txt", ROOT / "pyproject.toml"
    if argv[1:] in (["lock"], ["lock", "--upgrade"]):
        compile_lock(lock, pyproject, upgrade="--upgrade" in argv)
        return 0
    if argv[1:] == ["stamp"]:
        stamp(lock, pyproject)
        return 0
    if argv[1:] == ["check"]:
        problems = check(lock, pyproject)
        for p in problems:
            print(f"lock: {p}", file=sys.stderr)
        return 1 if problems else 0
    print("usage: python tools/lockfile.py check | lock [--upgrade] | stamp", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
