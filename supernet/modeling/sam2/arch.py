"""Architecture hyper-parameters of each SAM 2 model type (the SAM 2 builder registry's data).

Dimensions follow Meta's SAM 2.1 configs (``sam2.1_hiera_{t,s,b+,l}.yaml``): a Hiera trunk of four
stages, each stage after the first opened by a q-pool transition block that halves the grid and
doubles width and heads; an FPN neck of ``d_model`` channels whose lowest level (stride 32) is
dropped ("scalp"); SAM's prompt encoder and a mask decoder fed with the stride-4 and stride-8 FPN
levels. ``sam2_micro`` is samnas's own small SAM 2 (256 px input) for tests and the demo.

A model is described per block by :class:`Sam2BlockSpec` (its stage, widths, heads, MLP width and
attention window), so that a subnet with fewer blocks or heads is built by the same code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from infra.errors import ConfigError

SIDE_MULTIPLE = 32  # input side: the stride-32 trunk stage must tile, and the window embedding with it


@dataclass(frozen=True)
class Sam2BlockSpec:
    """One Hiera block. Widths in channels; ``window`` in tokens of the block's input grid, 0 = global.

    ``q_pool``: the block opens a stage, max-pooling its queries 2x2 (``dim`` -> ``dim_out``).
    Attention runs ``heads`` heads of ``head_dim`` channels (``heads * head_dim == dim_out`` in the
    full model).
    """

    stage: int
    dim: int
    dim_out: int
    heads: int
    head_dim: int
    mlp_dim: int
    window: int
    q_pool: bool


@dataclass(frozen=True)
class Sam2Arch:
    """Static shape of a SAM 2 image model. Sizes in pixels or tokens, widths in channels."""

    name: str
    img_size: int = 1024  # input side in pixels
    embed_dim: int = 96  # stage-1 width
    num_heads: int = 1  # stage-1 heads
    stages: tuple[int, ...] = (1, 2, 7, 2)  # blocks per stage
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)  # window per stage (its input grid's tokens)
    window_pos_embed_bkg: tuple[int, int] = (7, 7)  # background position embedding, interpolated to the grid
    mlp_ratio: float = 4.0
    d_model: int = 256  # neck channels == prompt embedding == decoder transformer width
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256
    iou_head_depth: int = 3
    num_multimask_outputs: int = 3
    mask_in_chans: int = 16
    stability_delta: float = 0.05  # dynamic multimask: logit band of the stability score
    stability_thresh: float = 0.98  # below it, a single-mask answer falls back to the best multimask
    # ImageNet statistics of 0..1 pixels: SAM 2 divides by 255, resizes, then normalises
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def depth(self) -> int:
        return sum(self.stages)

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index of each stage's last block."""
        return tuple(sum(self.stages[: i + 1]) - 1 for i in range(len(self.stages)))

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channels of each stage's output (stage 1 first)."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.stages)))

    @property
    def stage_heads(self) -> tuple[int, ...]:
        return tuple(self.num_heads * 2**i for i in range(len(self.stages)))

    def block_specs(self) -> list[Sam2BlockSpec]:
        """Every block of the full model, in order (as Meta's ``Hiera.__init__`` lays them out).

        A transition block attends in the previous stage's window on its input grid (its queries
        are pooled inside the window), so its window lags its stage by one.
        """
        specs, first = [], {sum(self.stages[:s]) for s in range(1, len(self.stages))}
        stage = 0
        for i in range(self.depth):
            window = 0 if i in self.global_att_blocks else self.window_spec[stage]
            if i in first:
                stage += 1
            dim_in = self.stage_dims[stage - 1] if i in first else self.stage_dims[stage]
            dim_out, heads = self.stage_dims[stage], self.stage_heads[stage]
            specs.append(Sam2BlockSpec(stage, dim_in, dim_out, heads, dim_out // heads,
                                       int(dim_out * self.mlp_ratio), window, i in first))
        return specs

    def to_dict(self) -> dict:
        return asdict(self)


def fixed_reason(index: int, spec: Sam2BlockSpec) -> str | None:
    """Why block ``index`` (``spec``) can never be skipped in a subnet, or None when it can.

    Block 0 is the first to see the patch embeddings; a transition changes the grid, width and
    heads, so skipping it would change every later block's shapes.
    """
    if index == 0:
        return "it is the trunk's first block"
    if spec.q_pool:
        return f"it opens stage {spec.stage} (a q-pool transition: width {spec.dim} -> {spec.dim_out})"
    return None


def check_side(side: int, what: str = "input side") -> int:
    """``side`` if it is a positive multiple of 32 pixels, else a one-line :class:`ConfigError`."""
    if isinstance(side, bool) or not isinstance(side, int) or side <= 0 or side % SIDE_MULTIPLE:
        raise ConfigError(f"{what} {side!r}: SAM 2 needs a positive multiple of {SIDE_MULTIPLE} pixels "
                          f"(e.g. 1024, 768, 512)")
    return side


SAM2_ARCHS: dict[str, Sam2Arch] = {
    "sam2_hiera_t": Sam2Arch("sam2_hiera_t"),
    "sam2_hiera_s": Sam2Arch("sam2_hiera_s", stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13)),
    "sam2_hiera_b_plus": Sam2Arch(
        "sam2_hiera_b_plus", embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg=(14, 14),
    ),
    "sam2_hiera_l": Sam2Arch(
        "sam2_hiera_l", embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
    ),
    # 256 px, 5 blocks: one transition per stage, a global block in stage 3, and a stage-3 window (6)
    # that does not divide its grid, so the padding path of hiera_b+/l at 512 px runs here too.
    "sam2_micro": Sam2Arch(
        "sam2_micro", img_size=256, embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
        window_spec=(8, 4, 6, 4), d_model=64, decoder_mlp_dim=256, decoder_heads=4, iou_head_hidden_dim=64,
    ),
}
# Meta's file names for the same models (sam2.1_hiera_tiny.pt, ..., configs sam2.1_hiera_b+.yaml)
META_NAMES = {"sam2_hiera_t": "hiera_tiny", "sam2_hiera_s": "hiera_small", "sam2_hiera_b_plus": "hiera_base_plus",
              "sam2_hiera_l": "hiera_large"}


def get_sam2_arch(model_type: str) -> Sam2Arch:
    """The architecture of ``model_type`` (sam2_hiera_t, sam2_hiera_s, sam2_hiera_b_plus, sam2_hiera_l, sam2_micro)."""
    try:
        return SAM2_ARCHS[model_type]
    except KeyError:
        raise ConfigError(f"SAM 2 model type {model_type!r} unknown; expected one of {sorted(SAM2_ARCHS)}") from None
