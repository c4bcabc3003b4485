"""Security properties that a code scan can hold the package to (bandit runs in `make test` too)."""

import ast

from tests.conftest import ROOT

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
