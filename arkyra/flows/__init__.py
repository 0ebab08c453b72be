"""Prefect flows: composition only (content_pipeline, analytics_digest); ``serve`` serves them."""
