"""CLI layer: handing a recipe to a cluster: cluster-bundle, verify-data.

``cluster-bundle`` writes the folder described in ``engine/cluster/bundle.py``;
``verify-data`` checks a copy of the dataset against the bundle's manifest, and is
what the bundle's launch files run before training. Its exit status says whether
the copy matches: 0 it does, 3 it does not (``EXIT_DIFFERS``), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from .common import (
    EXIT_OK,
    EXIT_STOPPED,
    Commands,
    Handler,
    print_json,
    run_cancellable,
)
from .recipe_options import add_recipe_options, recipe_from_args

EXIT_DIFFERS = 3
"""verify-data: the copy does not match the manifest (1 stays for our own bugs)."""


def add_commands(commands: Commands) -> dict[str, Handler]:
    bundle = commands.add_parser(
        "cluster-bundle",
        help="write a folder to train this recipe on a cluster (torchrun, SLURM, SkyPilot)",
    )
    bundle.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    bundle.add_argument("--out", required=True, help="new folder to write the bundle to")
    bundle.add_argument("--nodes", type=int, default=1, help="machines (SLURM, SkyPilot)")
    bundle.add_argument(
        "--gpus-per-node", type=int, default=1, metavar="N", help="GPUs (processes) per machine"
    )
    bundle.add_argument(
        "--data-path-on-cluster",
        default="data",
        metavar="PATH",
        help="where the dataset's copy will be; relative: to the bundle folder (default: data)",
    )
    bundle.add_argument(
        "--accelerator", default="A100", help="SkyPilot's GPU name (A100, H100, L4, ...)"
    )
    bundle.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier bundle's files in --out (its data/ and output/ stay)",
    )
    bundle.add_argument("--json", action="store_true", help="machine-readable output")
    add_recipe_options(bundle)

    verify = commands.add_parser(
        "verify-data",
        help="check a copy of a dataset against a bundle's manifest.json (exit 3: differs)",
    )
    verify.add_argument("data", help="the dataset's copy")
    verify.add_argument("--manifest", required=True, help="the bundle's manifest.json")
    verify.add_argument(
        "--sizes-only", action="store_true", help="compare sizes, not hashes (much faster)"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    return {"cluster-bundle": _cmd_cluster_bundle, "verify-data": _cmd_verify_data}


def _cmd_cluster_bundle(args: argparse.Namespace) -> int:
    from ..engine.cluster.bundle import BundleOptions, ClusterBundle

    recipe = recipe_from_args(args)
    options = BundleOptions(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        data_path=args.data_path_on_cluster,
        accelerator=args.accelerator,
        overwrite=args.overwrite,
    )
    result = run_cancellable(ClusterBundle(recipe, args.out, options), "bundle")
    if result is None:
        return EXIT_STOPPED
    if args.json:
        print_json(result.to_dict())
        return EXIT_OK
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"Wrote {result.folder} ({result.pictures:,} pictures in the manifest):")
    for name in result.files:
        print(f"  {name}")
    print(f"Copy the dataset (CLUSTER and BUNDLE: yours):\n  {result.copy_command}")
    print("Then launch:")
    for command in result.commands:
        print(f"  {command.label} ({command.where}):\n    {command.command}")
    return EXIT_OK


def _cmd_verify_data(args: argparse.Namespace) -> int:
    from ..engine.cluster.manifest import load_manifest
    from ..engine.cluster.verify import CopyVerification

    manifest = load_manifest(args.manifest)
    check = run_cancellable(CopyVerification(args.data, manifest, args.sizes_only), "check")
    if check is None:
        return EXIT_STOPPED
    if args.json:
        print_json(check.to_dict())
    else:
        print(check.summary(), file=sys.stdout if check.matches else sys.stderr)
    return EXIT_OK if check.matches else EXIT_DIFFERS


__all__ = ["EXIT_DIFFERS", "add_commands"]
