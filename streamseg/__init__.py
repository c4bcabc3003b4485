"""streamseg: real-time semantic + instance segmentation of driving video.

    import streamseg
    with streamseg.Pipeline.from_config("configs/demo.yaml", sources=["drive.mp4"]) as run:
        for r in run.results():        # streamseg.FrameResult, per stream in order
            print(r.stream, r.seq, len(r.instances))

docs/python-api.md says the rest. `import streamseg` stays light: the pipeline (OpenCV, the
engines' runtimes) is imported when first named.
"""

__version__ = "0.1.0"

__all__ = ["FrameResult", "Pipeline", "UserError"]


def __getattr__(name: str):
    if name == "Pipeline":
        from streamseg.pipeline import Pipeline

        return Pipeline
    if name == "FrameResult":
        from streamseg.api import FrameResult

        return FrameResult
    if name == "UserError":
        from streamseg.errors import UserError

        return UserError
    raise AttributeError(f"module 'streamseg' has no attribute {name!r}")
