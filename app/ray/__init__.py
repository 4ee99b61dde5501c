"""The service on Ray Serve: the same HTTP API, with decoding, the model and the cameras scaled apart.

- ``ingress.py``: the Ingress deployment, the FastAPI app of ``app.main.create_app`` (uploads, limits, decoding,
  sampling, the host's half of preprocessing, on CPU; no model), talking to the model through ``RayBackend``
  (``backend.py``) and to the live streams through ``RayStreams`` (``streams.py``).
- ``model.py``: the Model deployment, the checkpoint on one (fractional) GPU or on CPU behind this project's
  ``Batcher`` (``LocalBackend``), batching the clips every ingress replica sends it.
- ``coordinator.py``: one small Coordinator replica: every replica reports its metrics to it (so any ingress
  replica can answer ``/metrics`` for all of them) and ingress replicas hear from it when to drain.
- ``registry.py``: the StreamRegistry deployment, one replica holding the live streams (ids, settings, status),
  each run by a camera actor (``camera.py``: ``app.streams.Stream`` in an actor, its clips to the Model
  deployment behind requests); ``detection.py``: a node's detector shared by its cameras, batching their frames.
- ``app.py``: the application builder (``serve run deploy/ray/serve.yaml``) and its options.
- ``__main__.py``: ``python -m app.ray``, a local Ray (or ``RAY_ADDRESS``'s) serving it.

Only this package imports Ray; the rest of ``app`` does not need it.
"""
