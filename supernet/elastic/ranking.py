"""Importance ranking of attention heads and MLP neurons, and the weight permutation it drives.

The same code ranks SAM 2's Hiera blocks (a :class:`Sam2` supernet): heads are scored on the
output side of ``qkv`` (at a stage transition it maps ``dim`` to ``3 * heads * head_dim`` of the
wider stage) and on ``proj``'s input columns; a transition's block-level shortcut ``proj``
(``dim -> dim_out``) owns no head and is never permuted, so stage widths and the residual
stream keep their order.

Three scores per unit (a head of block ``i``, or a hidden neuron of its MLP), each summed
over the weights the unit owns (its q/k/v rows and ``proj`` columns, or its ``lin1`` row
and ``lin2`` column):

- ``magnitude``: ``|W|``;
- ``wanda``: ``|W| * ||x||_2``, with ``x`` the layer's input activations recorded on the
  calibration images (Sun et al., 2023);
- ``taylor``: ``|sum(W * dL/dW)|`` per image, with ``L`` an embedding-distillation loss
  against the full model's embeddings disturbed by Gaussian noise (SlimSAM's disturbed
  Taylor importance: without the noise the full model's loss and gradient are zero).
  No labels are needed. In SAM 2 the loss sums over all three decoder inputs (the image
  embedding and both high-resolution features).

:func:`permute_by_importance` then reorders each block's heads and neurons from most to
least important, so every "first k" slice of the supernet keeps the best units. The
reordering preserves the full model's function.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from tqdm import tqdm

from supernet.elastic.build import encoder_blocks
from supernet.elastic.modules import ElasticEncoderBlock
from supernet.elastic.sam2_modules import ElasticMultiScaleBlock
from supernet.modeling.predictor import decoder_inputs
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

METHODS = ("magnitude", "wanda", "taylor")

BlockScores = list[dict[str, torch.Tensor]]  # per block: {"heads": (H,), "mlp": (M,)}
Block = ElasticEncoderBlock | ElasticMultiScaleBlock


def _head_view(block: Block) -> tuple[torch.Tensor, torch.Tensor]:
    """qkv weight as ``(3, H, hd, C)`` and proj weight as ``(C, H, hd)``."""
    attn = block.attn
    qkv = attn.qkv.weight.view(3, attn.num_heads, attn.head_dim, -1)
    proj = attn.proj.weight.view(attn.proj.weight.shape[0], attn.num_heads, attn.head_dim)
    return qkv, proj


def magnitude_scores(model: Sam | Sam2) -> BlockScores:
    """``sum |W|`` over each head's and each neuron's weights."""
    scores = []
    with torch.no_grad():
        for block in encoder_blocks(model):
            qkv, proj = _head_view(block)
            heads = qkv.abs().sum(dim=(0, 2, 3)) + proj.abs().sum(dim=(0, 2))
            mlp = block.mlp.lin1.weight.abs().sum(dim=1) + block.mlp.lin2.weight.abs().sum(dim=0)
            scores.append({"heads": heads, "mlp": mlp})
    return scores


class _SquaredNorms:
    """Forward hooks accumulating per-channel ``sum x^2`` over every token seen."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.handles = []

    def watch_input(self, module: torch.nn.Module, key: str) -> None:
        self.handles.append(module.register_forward_pre_hook(lambda m, args: self._add(key, args[0])))

    def watch_output(self, module: torch.nn.Module, key: str) -> None:
        self.handles.append(module.register_forward_hook(lambda m, args, out: self._add(key, out)))

    def _add(self, key: str, x: torch.Tensor) -> None:
        sq = x.detach().double().pow(2).reshape(-1, x.shape[-1]).sum(dim=0)
        self.sums[key] = self.sums[key] + sq if key in self.sums else sq

    def norm(self, key: str) -> torch.Tensor:
        return self.sums[key].sqrt().float()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def wanda_scores(model: Sam | Sam2, images: Iterable[torch.Tensor]) -> BlockScores:
    """``sum |W| * ||x||_2`` per unit from activations recorded on preprocessed ``(1, 3, R, R)`` images."""
    probes = _SquaredNorms()
    blocks = encoder_blocks(model)
    for i, block in enumerate(blocks):
        probes.watch_input(block.attn, f"{i}.attn_in")
        probes.watch_output(block.attn.proj_input, f"{i}.proj_in")
        probes.watch_input(block.mlp, f"{i}.mlp_in")
        probes.watch_output(block.mlp.act, f"{i}.hidden")
    try:
        with torch.no_grad():
            for image in images:
                model.image_encoder(image)
    finally:
        probes.remove()
    if not probes.sums:
        raise ValueError("wanda ranking needs at least one calibration image")
    scores = []
    with torch.no_grad():
        for i, block in enumerate(blocks):
            qkv, proj = _head_view(block)
            attn_in, proj_in = probes.norm(f"{i}.attn_in"), probes.norm(f"{i}.proj_in")
            proj_in = proj_in.view(block.attn.num_heads, block.attn.head_dim)
            heads = (qkv.abs() * attn_in).sum(dim=(0, 2, 3)) + (proj.abs() * proj_in).sum(dim=(0, 2))
            lin1, lin2 = block.mlp.lin1.weight, block.mlp.lin2.weight
            mlp = (lin1.abs() * probes.norm(f"{i}.mlp_in")).sum(dim=1) + (lin2.abs() * probes.norm(f"{i}.hidden")).sum(0)
            scores.append({"heads": heads, "mlp": mlp})
    return scores


def taylor_scores(model: Sam | Sam2, images: Iterable[torch.Tensor], noise_std: float = 0.1, seed: int = 0) -> BlockScores:
    """``|sum W * dL/dW|`` per unit and image, summed over images.

    ``L = MSE(f(x), f(x).detach() + eps)`` with ``eps ~ N(0, (noise_std * std(f(x)))^2)``.
    """
    gen = torch.Generator().manual_seed(seed)
    blocks = encoder_blocks(model)
    totals = [{"heads": torch.zeros(b.attn.num_heads), "mlp": torch.zeros(b.mlp.hidden)} for b in blocks]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for image in images:
            model.zero_grad(set_to_none=True)
            loss = 0.0
            for out in decoder_inputs(model, image):
                target = out.detach() + torch.randn(out.shape, generator=gen) * noise_std * out.detach().std()
                loss = loss + torch.nn.functional.mse_loss(out, target)
            loss.backward()
            with torch.no_grad():
                for block, total in zip(blocks, totals):
                    attn, mlp = block.attn, block.mlp
                    qkv_gw = (attn.qkv.weight * attn.qkv.weight.grad).view(3, attn.num_heads, attn.head_dim, -1)
                    qkv_gw = qkv_gw.sum(dim=(0, 2, 3)) + (attn.qkv.bias * attn.qkv.bias.grad).view(
                        3, attn.num_heads, attn.head_dim).sum(dim=(0, 2))
                    proj_gw = (attn.proj.weight * attn.proj.weight.grad).view(-1, attn.num_heads, attn.head_dim)
                    total["heads"] += (qkv_gw + proj_gw.sum(dim=(0, 2))).abs()
                    lin1_gw = (mlp.lin1.weight * mlp.lin1.weight.grad).sum(1) + mlp.lin1.bias * mlp.lin1.bias.grad
                    lin2_gw = (mlp.lin2.weight * mlp.lin2.weight.grad).sum(0)
                    total["mlp"] += (lin1_gw + lin2_gw).abs()
            seen += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if not seen:
        raise ValueError("taylor ranking needs at least one calibration image")
    return totals


def compute_scores(model: Sam | Sam2, method: str, images: Callable[[], Iterable[torch.Tensor]] | None = None) -> BlockScores:
    """Scores by ``method``; ``images`` returns an iterable of preprocessed ``(1, 3, R, R)`` images."""
    if method == "magnitude":
        return magnitude_scores(model)
    if method not in METHODS:
        raise ValueError(f"ranking method {method!r} unknown; expected one of {list(METHODS)}")
    if images is None:
        raise ValueError(f"ranking method {method!r} needs calibration images")
    return wanda_scores(model, images()) if method == "wanda" else taylor_scores(model, images())


def block_permutations(block: Block, head_order: torch.Tensor, neuron_order: torch.Tensor) -> dict:
    """For each parameter of a block that ranking reorders, a function reordering any tensor of its shape.

    ``order[k]`` is the old index of new unit ``k``. The same functions reorder optimizer
    state (Adam moments) so that training can re-rank without losing momentum.
    """
    attn, mlp = block.attn, block.mlp
    heads, hd = attn.num_heads, attn.head_dim

    def qkv_rows(t):
        return t.view(3, heads, hd, *t.shape[1:])[:, head_order].reshape(t.shape)

    def proj_cols(t):
        return t.view(t.shape[0], heads, hd)[:, head_order].reshape(t.shape)

    return {
        attn.qkv.weight: qkv_rows,
        attn.qkv.bias: qkv_rows,
        attn.proj.weight: proj_cols,
        mlp.lin1.weight: lambda t: t[neuron_order],
        mlp.lin1.bias: lambda t: t[neuron_order],
        mlp.lin2.weight: lambda t: t[:, neuron_order],
    }


@torch.no_grad()
def permute_block(block: Block, head_order: torch.Tensor, neuron_order: torch.Tensor,
                  optimizer: torch.optim.Optimizer | None = None) -> None:
    """Reorder a block's heads and MLP neurons in place, and the matching optimizer state if given."""
    for param, reorder in block_permutations(block, head_order, neuron_order).items():
        param.copy_(reorder(param))
        state = optimizer.state.get(param, {}) if optimizer is not None else {}
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.copy_(reorder(value))


def permute_by_importance(model: Sam | Sam2, scores: BlockScores,
                          optimizer: torch.optim.Optimizer | None = None) -> list[dict[str, list[int]]]:
    """Sort every block's heads and neurons by descending score; returns the orders applied."""
    orders = []
    for block, score in zip(encoder_blocks(model), scores):
        head_order = torch.argsort(score["heads"], descending=True, stable=True)
        neuron_order = torch.argsort(score["mlp"], descending=True, stable=True)
        permute_block(block, head_order, neuron_order, optimizer)
        orders.append({"heads": head_order.tolist(), "mlp": neuron_order.tolist()})
    return orders


def rank_model(model: Sam | Sam2, method: str, images: Callable[[], Iterable[torch.Tensor]] | None = None,
               progress: bool = False) -> dict:
    """Score and permute ``model`` in place; returns JSON-ready ranking metadata (orders and sorted scores)."""
    scores = compute_scores(model, method, images)
    orders = permute_by_importance(model, scores)
    blocks = []
    for score, order in zip(tqdm(scores, desc="permuting", disable=not progress), orders):
        blocks.append({
            "head_order": order["heads"],
            "head_scores": [round(float(v), 6) for v in score["heads"][order["heads"]]],
            "mlp_order": order["mlp"],
        })
    return {"method": method, "blocks": blocks}
