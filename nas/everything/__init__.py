"""Segment-everything: automatic mask generation with prompt-sampling policies, and their tuning.

- :mod:`.masks`: grids, crops, boxes, stability, NMS, RLE, small-region cleanup, the per-mask
  :class:`~.masks.MaskData` columns (plain torch/numpy, matching SAM's ``amg`` functions);
- :mod:`.policies`: the :class:`~.policies.Policy` dataclass (grid | hierarchical | adaptive) and its YAML file;
- :mod:`.generator`: :class:`~.generator.MaskGenerator` (official-API predictors) and the decoder cache;
- :mod:`.tune`: Optuna tuning of the policy per model, device and time budget, and quality metrics;
- :mod:`.commands`: ``samnas everything`` and ``samnas tune-everything``.
"""
