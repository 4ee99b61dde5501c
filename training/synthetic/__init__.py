"""Synthetic media: rendered pedestrians (``render``), their labelled tracklets in the MARS layout (``tracklets``,
``python -m training.synthetic``) and street scenes with ground-truth tracks (``scenes``)."""
