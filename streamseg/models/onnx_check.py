"""Checks on an ONNX file before any runtime opens it: the one implementation lives with the
backends (a lower layer), re-exported here for callers that think in models."""

from __future__ import annotations

from streamseg.backends.onnx_files import check_external_data

__all__ = ["check_external_data"]
