"""Supernet and reference-model training: sandwich-rule distillation, losses and their commands.
Lives in :mod:`nas` because it draws each step's subnets from a search space."""
