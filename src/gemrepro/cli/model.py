"""``gemrepro model``: inspect GemNet presets (configuration and parameter count) of either variant."""

from __future__ import annotations

import argparse
import json

import torch

from gemrepro.model.gemnet import build_model
from gemrepro.model.presets import PAPER_STATED_PARAMETERS, PRESETS, REFERENCE_PARAMETER_COUNTS, VARIANTS


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters incl. the fixed scale factors, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def parse_variant(value: str) -> str:
    """``--variant`` value, case-insensitive: "T" or "Q" (ValueError otherwise)."""
    variant = str(value).strip().upper()
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be one of {', '.join(VARIANTS)}, got {value!r}")
    return variant


def _info(args: argparse.Namespace) -> int:
    variant = parse_variant(args.variant)
    model = build_model(variant, args.preset)
    total, trainable = count_parameters(model)
    reference = REFERENCE_PARAMETER_COUNTS[variant]
    if args.json:
        print(
            json.dumps(
                {
                    "preset": args.preset,
                    "variant": variant,
                    "config": model.config.to_dict(),
                    "parameters": total,
                    "trainable_parameters": trainable,
                    "reference_parameters": REFERENCE_PARAMETER_COUNTS,
                },
                indent=2,
            )
        )
        return 0
    print(f"GemNet-{variant}, preset {args.preset!r}")
    for key, value in model.config.to_dict().items():
        print(f"  {key:<18} {value}")
    print(f"parameters:            {total:>10,}  ({trainable:,} trainable; the rest are fitted scale factors)")
    print(f"reference GemNet-T:    {REFERENCE_PARAMETER_COUNTS['T']:>10,}  (TUM-DAML/gemnet_pytorch default config)")
    print(f"reference GemNet-Q:    {REFERENCE_PARAMETER_COUNTS['Q']:>10,}  (same, quadruplet variant)")
    print(f"Stocker et al. state:  {PAPER_STATED_PARAMETERS:>10,}  (their GemNet-Q)")
    if args.preset == "paper":
        print(f"ours / reference {variant}:   {total / reference:.6f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="GemNet model presets and parameter counts")
    commands = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    info = commands.add_parser("info", help="print a preset's configuration and parameter count")
    info.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    info.add_argument(
        "--variant", default="T", help="GemNet-T (triplets) or GemNet-Q (quadruplets, the first paper's model)"
    )
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: parser.print_help())
