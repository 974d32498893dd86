"""The SAM 2 supernet's elastic modules: a Hiera trunk whose blocks run a sub-network of themselves.

As SAM 1's :mod:`supernet.elastic.modules`: every block keeps its full weights and runs the
*active* sub-network by slicing them at run time, the first ``k`` heads (head-major, on the
output side of ``qkv``: at a transition ``qkv`` maps ``dim`` to ``3 * heads * head_dim`` of
the wider stage) and the first ``k`` MLP neurons; a skipped block is the identity. Stage
widths never change: a transition block's shortcut ``proj`` (``dim -> dim_out``) is never
sliced, and block 0 and the transition blocks always run. Each class subclasses its plain
counterpart in ``supernet.modeling.sam2.hiera`` and adds no parameters, so the state dicts
agree (a checkpoint loads into either) and, with everything active, the forward pass is the
plain model's bit for bit.

Which sub-network is active is set by ``supernet.elastic.activation``.
"""
from __future__ import annotations


from supernet.elastic.modules import HeadSlicing, NeuronSlicing
from supernet.modeling.sam2.arch import Sam2BlockSpec
from supernet.modeling.sam2.hiera import Hiera, HieraMLP, MultiScaleAttention, MultiScaleBlock


class ElasticMultiScaleAttention(HeadSlicing, MultiScaleAttention):
    """:class:`MultiScaleAttention` of the supernet: only the first ``active_heads`` heads run."""


class ElasticHieraMLP(NeuronSlicing, HieraMLP):
    """:class:`HieraMLP` of the supernet: only the first ``active_hidden`` hidden units run."""


class ElasticMultiScaleBlock(MultiScaleBlock):
    """:class:`MultiScaleBlock` of the supernet: elastic in heads and MLP width."""

    attention_cls = ElasticMultiScaleAttention
    mlp_cls = ElasticHieraMLP


class ElasticHiera(Hiera):
    """The supernet's trunk: elastic blocks, and depth elasticity through ``active_blocks``.

    A skipped block passes its input on; a stage whose last block is skipped outputs its last
    kept block's tokens (block 0 and the transitions always run, so each stage keeps one).
    """

    block_cls = ElasticMultiScaleBlock

    def __init__(self, blocks_spec: list[Sam2BlockSpec], window_pos_embed_bkg: tuple[int, int],
                 first_window: int) -> None:
        super().__init__(blocks_spec, window_pos_embed_bkg, first_window)
        self.active_blocks: list[bool] = [True] * len(self.blocks)  # False skips the block (identity)

    def runs_block(self, index: int) -> bool:
        return self.active_blocks[index]
