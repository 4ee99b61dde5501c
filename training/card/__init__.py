"""The model card: ``report`` evaluates a checkpoint and writes MODEL_CARD.md; ``plots`` draws its figures."""
