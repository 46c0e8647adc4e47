"""Export: the export job and the verify job over the backend registry, the card builder, model sources.

``export_model`` (build + :func:`export_torch_model`) writes any backend's file, or a folder for a
multi-graph model, proved and certified, atomically; ``verify_file`` proves any file again.

The names load on first use, so ``stateport.export.backends`` (the registry: names, extras,
suffixes) can be imported without torch.
"""

_PIPELINE = ("ExportResult", "export_model", "export_torch_model", "prove", "verify_file")

__all__ = list(_PIPELINE)


def __getattr__(name):
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
