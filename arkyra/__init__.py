"""ARKYRA Pipelines: content-to-media pipelines on Prefect."""

__version__ = "0.1.0"
