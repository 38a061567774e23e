"""The ingestion gateway: an MLflow-compatible tracking server built for write floods."""

__version__ = "0.1.0"
