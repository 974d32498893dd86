"""ONNX export of a SAM 2 subnet: the image encoder with its three outputs, and the prompt decoder.

The encoder (:class:`Sam2EncoderCall`) is ``Sam2.embed_images``: Hiera trunk, FPN neck, the decoder's
``conv_s0`` / ``conv_s1`` projections of the stride-4 and stride-8 levels, and ``no_mem_embed`` added to
the image embedding. ``no_mem_embed`` lives in the encoder graph because every image-only prediction
adds it (Meta's ``SAM2ImagePredictor.set_image`` does, and so does samexporter's SAM 2 encoder), so the
decoder takes the image embedding exactly as SAM 2's mask decoder does.

The decoder (:class:`Sam2PromptDecoderOnnx`) follows SAM's ONNX contract
(:class:`nas.export.onnx_export.PromptDecoderOnnx`) with the two high-resolution maps as extra inputs.
SAM 2's prompt encoder always appends a padding point; as with SAM's contract, the caller appends it
(:func:`sam2_contract_points`), so one graph serves batches of prompt sets. Mask 0 of the outputs is
SAM 2's single-mask answer as ``multimask_output=False`` gives it (the single-mask token, replaced by the
multimask output of highest IoU where its stability score is below the threshold), masks 1-3 the
multimask outputs.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from supernet.modeling.sam2.model import BACKBONE_STRIDE, Sam2, Sam2EncoderCall

from nas.export.onnx_export import (OPSET, PromptDecoderOnnx, _temp_beside, compare_embeddings, decoder_cases_error,
                                   onnx_session, write_decoder_onnx)

SAM2_ENCODER_OUTPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1")
SAM2_DECODER_INPUTS = SAM2_ENCODER_OUTPUTS + ("point_coords", "point_labels", "mask_input", "has_mask_input",
                                              "orig_im_size")
LOW_RES_CLAMP = 32.0  # SAM2ImagePredictor clamps the low-res logits it returns to +-32


def sam2_shapes(model: Sam2) -> dict:
    """Every tensor shape of both SAM 2 graphs for ``model`` (``B`` prompt sets, ``N`` points, original
    ``H x W``); the channel counts are the model's own (the neck's width, ``conv_s0`` / ``conv_s1`` outputs)."""
    dec = model.sam_mask_decoder
    c, g = dec.transformer_dim, model.resolution // BACKBONE_STRIDE
    m = dec.num_mask_tokens
    return {"images": [1, 3, model.resolution, model.resolution], "image_embed": [1, c, g, g],
            "high_res_feats_0": [1, dec.conv_s0.out_channels, 4 * g, 4 * g],
            "high_res_feats_1": [1, dec.conv_s1.out_channels, 2 * g, 2 * g],
            "point_coords": ["B", "N", 2], "point_labels": ["B", "N"], "mask_input": [1, 1, 4 * g, 4 * g],
            "has_mask_input": [1], "orig_im_size": [2],
            "masks": ["B", m, "H", "W"], "iou_predictions": ["B", m], "low_res_masks": ["B", m, 4 * g, 4 * g]}


def export_sam2_encoder_onnx(model: Sam2, path: str | Path) -> Path:
    """Write :class:`Sam2EncoderCall` of ``model`` as ONNX (input ``images``), atomically (TorchScript-based
    exporter, as ``export_encoder_onnx``)."""
    path = Path(path)
    example = torch.zeros(1, 3, model.resolution, model.resolution)
    with _temp_beside(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Sam2EncoderCall(model).eval(), (example,), tmp, dynamo=False, opset_version=OPSET,
                          input_names=["images"], output_names=list(SAM2_ENCODER_OUTPUTS))
    return path


def sam2_encoder_error(model: Sam2, path: str | Path, seed: int = 0) -> dict[str, float]:
    """Largest ``|ONNX Runtime - PyTorch|`` of each encoder output on one random input (``seed``)."""
    return {name: error["max_abs"] for name, error in sam2_output_errors(model, path, seed).items()}


@torch.no_grad()
def sam2_output_errors(model: Sam2, path: str | Path, seed: int = 0) -> dict[str, dict]:
    """Each encoder output of ONNX Runtime against ``model``'s in PyTorch on one random input (``seed``):
    ``{output name: compare_embeddings result}`` (``max_abs``, ``rel_l2``, ``cosine``)."""
    x = torch.randn(1, 3, model.resolution, model.resolution, generator=torch.Generator().manual_seed(seed))
    ref = Sam2EncoderCall(model).eval()(x)
    got = onnx_session(path).run(list(SAM2_ENCODER_OUTPUTS), {"images": x.numpy()})
    return {name: compare_embeddings(g, r.numpy()) for name, g, r in zip(SAM2_ENCODER_OUTPUTS, got, ref)}


class Sam2PromptDecoderOnnx(PromptDecoderOnnx):
    """SAM 2's prompt encoder + mask decoder + mask upscaling on SAM's ONNX contract plus the high-res maps.

    Inputs: ``image_embed (1, C, g, g)``, ``high_res_feats_0 (1, C/8, 4g, 4g)``, ``high_res_feats_1
    (1, C/4, 2g, 2g)`` (the encoder's outputs); ``point_coords (B, N, 2)`` float px ``(x, y)`` in the
    ``R x R`` input frame (``x * R / W``, ``y * R / H``); ``point_labels (B, N)`` (2 / 3 box corners first,
    then 1 fg / 0 bg clicks, then the padding point ``(0, 0)`` labelled -1, always); ``mask_input
    (1, 1, 4g, 4g)`` used when ``has_mask_input (1,)`` is 1; ``orig_im_size (2,)`` ``(H, W)``.
    Outputs: ``masks (B, 4, H, W)`` logits (mask 0 SAM 2's single-mask answer, see the module),
    ``iou_predictions (B, 4)``, ``low_res_masks (B, 4, 4g, 4g)`` clamped to +-32 as SAM 2's predictor does.
    """

    @property
    def prompt_encoder(self):
        return self.model.sam_prompt_encoder

    def forward(self, image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels, mask_input,
                has_mask_input, orig_im_size):
        decoder = self.model.sam_mask_decoder
        low_res, iou, _ = decoder.predict_masks(
            image_embed, self.prompt_encoder.get_dense_pe(), self._embed_points(point_coords, point_labels),
            self._embed_mask(mask_input, has_mask_input), [high_res_feats_0, high_res_feats_1])
        single, single_iou = decoder.dynamic_multimask(low_res, iou)
        low_res, iou = torch.cat([single, low_res[:, 1:]], dim=1), torch.cat([single_iou, iou[:, 1:]], dim=1)
        size = orig_im_size.to(torch.int64)
        masks = F.interpolate(low_res, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        return masks, iou, torch.clamp(low_res, -LOW_RES_CLAMP, LOW_RES_CLAMP)


def sam2_decoder_example(model: Sam2, batch: int = 1, points: int = 2, orig_hw=(300, 400), seed: int = 0) -> dict:
    """A feed for the SAM 2 decoder (numpy float32, names :data:`SAM2_DECODER_INPUTS`): random features,
    points in the input frame, labels in {-1, 0, 1, 2, 3}, a random mask input used."""
    shapes = sam2_shapes(model)
    rng = np.random.default_rng(seed)
    feed = {name: rng.standard_normal(shapes[name]).astype(np.float32) for name in SAM2_ENCODER_OUTPUTS}
    return {**feed, "point_coords": (rng.random((batch, points, 2)) * model.resolution).astype(np.float32),
            "point_labels": rng.integers(-1, 4, (batch, points)).astype(np.float32),
            "mask_input": rng.standard_normal(shapes["mask_input"]).astype(np.float32),
            "has_mask_input": np.ones(1, np.float32), "orig_im_size": np.array(orig_hw, np.float32)}


def export_sam2_decoder_onnx(model: Sam2, path: str | Path) -> Path:
    """Write ``model``'s :class:`Sam2PromptDecoderOnnx` as ONNX, atomically; ``B``, ``N`` and the original
    ``H, W`` are dynamic axes."""
    return write_decoder_onnx(Sam2PromptDecoderOnnx(model), sam2_decoder_example(model), SAM2_DECODER_INPUTS, path)


def sam2_contract_points(coords, labels, box) -> tuple[np.ndarray, np.ndarray]:
    """One prompt set as the SAM 2 decoder takes it, in the order ``Sam2.decode`` builds it: the box's
    corners (labels 2, 3) when given, the clicks, then the padding point ``(0, 0)`` labelled -1.
    ``coords (1, N, 2)`` and ``box (1, 4)`` in the input frame; returns ``(1, N', 2)``, ``(1, N')``."""
    parts = [] if box is None else [(np.asarray(box, np.float32).reshape(1, 2, 2), np.array([[2, 3]], np.float32))]
    if coords is not None:
        parts.append((np.asarray(coords, np.float32), np.asarray(labels, np.float32)))
    parts.append((np.zeros((1, 1, 2), np.float32), np.array([[-1]], np.float32)))
    return np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=1)


@torch.no_grad()
def _torch_sam2_outputs(model: Sam2, features: dict, case: dict, mask, orig_hw) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's masks at ``orig_hw`` and IoU for one case, ordered as the ONNX graph orders them:
    ``multimask_output=False`` (SAM 2's dynamic choice) then the three multimask outputs."""
    points = None if case["coords"] is None else (torch.from_numpy(case["coords"]),
                                                  torch.from_numpy(case["labels"]).int())
    box = None if case["box"] is None else torch.from_numpy(case["box"])
    outs = [model.decode(features, points=points, boxes=box, masks=mask, multimask_output=multi)
            for multi in (False, True)]
    low, iou = torch.cat([outs[0][0], outs[1][0]], dim=1), torch.cat([outs[0][1], outs[1][1]], dim=1)
    return model.postprocess_masks(low, orig_hw).numpy(), iou.numpy()


def sam2_decoder_error(model: Sam2, run, orig_hw=(300, 400), seed: int = 0) -> dict:
    """The exported SAM 2 decoder against ``model`` in PyTorch on the prompt cases of
    :func:`nas.export.onnx_export.decoder_prompt_cases` (points, box, points + box, mask input), with
    features from the subnet's own encoder on a random image. ``run``: a path or a callable
    ``feed -> [masks, iou, low_res]``. Returns ``max_abs`` (IoU) and ``mask_agreement`` (the lowest share)."""
    feed = sam2_decoder_example(model, orig_hw=orig_hw, seed=seed)
    x = torch.randn(1, 3, model.resolution, model.resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        features = model.embed_images(x)
    feed.update(zip(SAM2_ENCODER_OUTPUTS, (t.numpy() for t in (features["image_embed"], *features["high_res_feats"]))))
    return decoder_cases_error(model, run, feed, sam2_contract_points,
                               lambda case, mask: _torch_sam2_outputs(model, features, case, mask, orig_hw), seed)
