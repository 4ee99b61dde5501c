"""Training VTFPAR++: ``data`` (dataset readers, frames, augmentation), ``synthetic`` (rendered pedestrians and
scenes), ``card`` (the model card), and at the top the paper's loss, schedule and metrics, the (multi-GPU) trainer,
the evaluator and calibration. Depends on ``model/``; ``model/`` and ``app/`` never import it."""
