"""streamseg: real-time semantic + instance segmentation of driving video."""

__version__ = "0.1.0"
