"""VTFPAR++ inference service: POST a clip (or a tracklet of crops), get per-attribute probabilities."""
