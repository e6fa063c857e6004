"""The service: a deployment answering requests over HTTP (app, batcher, metrics; Ray Serve; the load test;
Triton's model repository)."""
