"""Per-target Docker images, built and run through the Docker SDK for Python."""
