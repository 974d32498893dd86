"""``samnas extract``: cut a standalone subnet out of a (ranked) supernet checkpoint."""
from __future__ import annotations

import argparse

from infra.errors import UserError
from supernet.elastic.build import MODEL_TYPES
from supernet.elastic.extract import extract, save_subnet, subnet_metadata
from supernet.elastic.ranked import file_sha256, load_ranked

from .config import load_config
from .counting import count
from .space import SearchSpace

EXTRACT_EXAMPLES = """examples:
  samnas spaces sample sam_vit_b --largest --out subnet.yaml   # then edit the blocks you want
  samnas extract --checkpoint vit_b_ranked.pt --config subnet.yaml --out my_subnet/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        description="Validate SUBNET.yaml against its search space, slice the weights of the chosen heads, "
        "MLP neurons and blocks, and write subnet.pt + subnet.json, loadable without the supernet "
        "(supernet.elastic.extract.load_subnet).",
        epilog=EXTRACT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="ranked (or plain) SAM or SAM 2 checkpoint")
    p.add_argument("--model-type", choices=MODEL_TYPES, help="checked against the weights; inferred if omitted")
    p.add_argument("--config", required=True,
                   help="subnet config, YAML or JSON (also subnet.json, card.json or a `pareto --format json` row)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    space_name = config.space
    if not space_name:
        raise UserError(f"{args.config}: field 'space' is required (one of the names from `samnas spaces list`)")
    space = SearchSpace.load(space_name)
    config = space.validate(config, source=str(args.config))
    model, ranking = load_ranked(args.checkpoint, args.model_type)
    if model.arch.name != space.model_type:
        raise UserError(f"{args.config}: space {space.name} is for {space.model_type}, "
                        f"but {args.checkpoint} is a {model.arch.name} model")
    if ranking is None:
        print(f"warning: {args.checkpoint} has no ranking sidecar; slices keep the first units in stored order")
    counts = count(model, config)
    sub = extract(model, config, quantize=False)  # saved fp32; load_subnet quantizes int8 blocks
    meta = subnet_metadata(model, config, source_checkpoint=str(args.checkpoint),
                           source_sha256=file_sha256(args.checkpoint),
                           ranking_method=(ranking or {}).get("method"), **counts.as_dict())
    out = save_subnet(sub, meta, args.out)
    print(f"subnet: {counts.total_params / 1e6:.2f} M params, encoder {counts.encoder_flops / 1e9:.2f} GFLOPs "
          f"(multiply-adds) at {config.resolution} px")
    print(f"wrote {out / 'subnet.pt'} and {out / 'subnet.json'}")
    return 0
