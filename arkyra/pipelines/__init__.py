"""What the Prefect flows and tasks share: parameter models, the runtime seam, fallback over
provider chains, provider limits, cache keys, step reporting and incoming-hook events."""
