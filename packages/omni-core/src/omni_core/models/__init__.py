"""Models omni can build or ship locally, so nothing needs a model hub."""
