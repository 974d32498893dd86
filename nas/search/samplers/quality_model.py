"""The surrogate sampler's quality models (:data:`MODELS`): what a config's features are and how quality is
regressed on them. Every model is a Gaussian process (ARD Matern 5/2 plus noise, ``normalize_y``); they differ in:

- ``gp`` (the default): features ``SearchSpace.encode(config)`` (input side as ``resolution / img_size``, then
  keep, heads and MLP share per block) plus the predicted latency as a fraction of the budget;
- ``gp-no-ms``: the encoding alone. Latency mixes the input side and the pruning: in the trials of a search
  low latency mostly means heavy pruning (low quality), so the GP reads "fast" as "poor" for a lightly pruned
  config at a small input side too (docs/decisions.md, "Why a seed stalls");
- ``gp-trend``: the ``gp`` features, a linear trend (ridge regression, its strength chosen by leave-one-out)
  fitted first and the GP on what it leaves; prediction = trend + GP mean, spread from the GP. Away from the
  trials a zero-mean stationary GP reverts to the trials' mean, while the trend keeps extrapolating;
- ``per-resolution``: as ``gp-trend``, with the input side as one-hot columns (one per side of the space)
  instead of one scalar, so that the trend gives each side its own offset, not one slope through all sides.
  An offset kernel (a GP term shared only within a side) would do the same as a random effect, but with a
  zero mean it also shrinks a side seen once back to the mean, the failure this model is meant to avoid;
- ``gp-log``: the ``gp`` features, with the GP fitted to ``log(1 - quality + GAP_FLOOR)`` instead of quality.
  Fidelity is 1 for the full model, and each pruned part adds to what is lost, so the gap to 1 shrinks by
  factors as a config grows: on the log scale the steep rise near the full model is as easy to fit as the flat
  middle, where on the quality scale a stationary GP flattens it. Predictions go back by the delta method
  (mean ``1 + GAP_FLOOR - exp(m)``, sd ``exp(m) * s``);
- ``summary``: as ``per-resolution``, with the blocks as three shares over all blocks (kept blocks, heads and MLP
  width, each block's share of its full size, skipped blocks 0; plus the int8 share in an int8 space) instead of
  three entries per block: a handful of features that 32 trials can fit, at the price of not telling blocks apart.

:class:`QualityModel` is the one place that builds features and fits; its ``predict`` answers as sklearn's GP
does (``return_std``, ``return_cov``), so the proposal and ``expected_gain`` use every model alike.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

from .design import encode_many


@dataclass(frozen=True)
class ModelSpec:
    """How a quality model reads a config: ``ms``: the predicted-latency feature; ``trend``: a ridge trend under
    the GP; ``log_gap``: regress ``log(1 - quality + GAP_FLOOR)``; ``one_hot``: the input side as one-hot columns
    instead of one scalar; ``summary``: the blocks as three shares over all blocks (kept, heads, MLP) instead of three
    entries per block."""

    ms: bool = True
    log_gap: bool = False
    trend: bool = False
    one_hot: bool = False
    summary: bool = False


MODELS = {
    "gp": ModelSpec(),
    "gp-no-ms": ModelSpec(ms=False),
    "gp-log": ModelSpec(log_gap=True),
    "gp-trend": ModelSpec(trend=True),
    "per-resolution": ModelSpec(trend=True, one_hot=True),
    "summary": ModelSpec(trend=True, one_hot=True, summary=True),
}
RIDGE_ALPHAS = np.logspace(-3, 2, 11)  # the trend's regularisation, chosen by leave-one-out among these
GAP_FLOOR = 0.01  # keeps log(1 - quality) finite at quality 1 (the full model's fidelity)


class QualityModel:
    """Quality as a function of config and predicted latency, per :data:`MODELS` ``name``; refitted by :meth:`fit`.

    ``theta``: the GP kernel's (log) hyperparameters last optimised, reused by fits that do not optimise.
    """

    def __init__(self, name: str, space: SearchSpace, budget_ms: float, seed: int = 0) -> None:
        if name not in MODELS:
            raise ValueError(f"model {name!r}: expected one of {', '.join(MODELS)}")
        self.name, self.spec, self.space = name, MODELS[name], space
        self.budget_ms, self.seed = float(budget_ms), int(seed)
        self.sides = np.array(sorted(space.resolutions), dtype=float)
        self.theta: np.ndarray | None = None
        self.gp = self.trend = None

    def features(self, configs: list[SubnetConfig], ms: np.ndarray) -> np.ndarray:
        """``(len(configs), d)`` features: the encoding (input side as a scalar or one-hot), then ms / budget."""
        enc = encode_many(self.space, configs)
        if self.spec.summary:  # 32 trials cannot pin down 3 lengthscales per block; 3 shares they can
            n = self.space.num_blocks
            shares = enc[:, 1:1 + 3 * n].reshape(len(enc), n, 3).mean(axis=1)
            int8 = enc[:, 1 + 3 * n:].mean(axis=1, keepdims=True) if enc.shape[1] > 1 + 3 * n else enc[:, :0]
            enc = np.column_stack([enc[:, :1], shares, int8])
        if self.spec.one_hot:
            res = np.array([c.resolution for c in configs], dtype=float)
            enc = np.column_stack([(res[:, None] == self.sides[None, :]).astype(float), enc[:, 1:]])
        if self.spec.ms:
            enc = np.column_stack([enc, np.asarray(ms, dtype=float) / self.budget_ms])
        return enc

    def fit(self, configs: list[SubnetConfig], ms: np.ndarray, quality: np.ndarray, optimise: bool) -> QualityModel:
        """Fit on completed trials (``ms``: predicted latencies; ``quality``: their scores); the kernel's
        hyperparameters are optimised if ``optimise`` (or never yet), else reused from the last optimisation."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
        from sklearn.linear_model import RidgeCV

        X, y = self.features(configs, ms), np.asarray(quality, dtype=float)
        if self.spec.log_gap:
            y = np.log(np.clip(1.0 - y, 0.0, None) + GAP_FLOOR)
        self.trend = RidgeCV(alphas=RIDGE_ALPHAS).fit(X, y) if self.spec.trend else None
        residual = y - self.trend.predict(X) if self.trend is not None else y
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.ones(X.shape[1]), (1e-2, 1e2), nu=2.5)
                  + WhiteKernel(1e-3, (1e-6, 1e-1)))
        reuse = not optimise and self.theta is not None and len(self.theta) == len(kernel.theta)
        if reuse:
            kernel = kernel.clone_with_theta(self.theta)
        self.gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed,
                                           optimizer=None if reuse else "fmin_l_bfgs_b")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp.fit(X, residual)
        if not reuse:
            self.theta = self.gp.kernel_.theta.copy()
        return self

    def predict(self, configs: list[SubnetConfig], ms: np.ndarray, return_std: bool = False,
                return_cov: bool = False):
        """Predicted quality of ``configs`` (``(n,)``), with the GP's sd ``(n,)`` or covariance ``(n, n)`` as asked
        (the trend adds to the mean only)."""
        X = self.features(configs, ms)
        out = self.gp.predict(X, return_std=return_std, return_cov=return_cov)
        shift = self.trend.predict(X) if self.trend is not None else 0.0
        mean, spread = (out[0] + shift, out[1]) if return_std or return_cov else (out + shift, None)
        if self.spec.log_gap:  # back from log(1 - q + floor) by the delta method
            scale = np.exp(mean)
            mean = 1.0 + GAP_FLOOR - scale
            if spread is not None:
                spread = spread * scale if return_std else spread * np.outer(scale, scale)
        return (mean, spread) if return_std or return_cov else mean
