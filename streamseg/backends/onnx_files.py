"""Checks on an ONNX file before any runtime opens it.

Lives in the backends layer (every engine runs it in `Engine.load`) so that backends import
nothing from `streamseg.models`; models/onnx_check.py is the same function (to become a
re-export of this one: see the H8 report)."""

from __future__ import annotations

from pathlib import Path

from streamseg.errors import ModelError


def check_external_data(model_path: str | Path) -> None:
    """Refuse external tensor data that lives outside the model's folder.

    ONNX files may keep weights in side files named by a relative path; a path that is
    absolute, climbs out with `..`, or is a link pointing elsewhere could make a runtime
    read any file on the machine. Only files inside the model's own folder are allowed.
    """
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    path = Path(model_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(
            f"{path.name}: not a readable ONNX file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    base = path.parent.resolve()
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        rel = Path(location)
        where = base / rel
        if rel.is_absolute() or ".." in rel.parts or where.is_symlink() or not where.resolve().is_relative_to(base):
            raise ModelError(
                f"{path.name}: tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder; refused"
            )
