"""Training VTFPAR++: dataset readers, synthetic pedestrian videos, the paper's loss, schedule and metrics,
a (multi-GPU) trainer and an evaluator. Depends on ``model/``; ``model/`` and ``app/`` never import it."""
