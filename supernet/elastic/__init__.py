"""The elastic supernet: activating a subnet in the full model, ranking heads and MLP neurons by
importance, and extracting a subnet as a plain model of its own size."""
