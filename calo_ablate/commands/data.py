"""`calo-ablate data validate | download | synth | prepare`: their options (`register`) and what each does
(takes the argparse Namespace and returns the exit code; CaloAblateError is turned into a message by the
CLI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calo_ablate.commands.options import Subcommands, add_dataset
from calo_ablate.config import canonical_dataset
from calo_ablate.data.calochallenge import count_events, inspect_file, validate_file
from calo_ablate.data.download import download_dataset
from calo_ablate.data.source import SYNTHETIC_DIR, ensure_data
from calo_ablate.data.synthetic import synthesise

__all__ = ["download", "prepare", "register", "synth", "validate"]


def validate(args: argparse.Namespace) -> int:
    """Check FILE against the official layout of --dataset: a summary, or every problem and exit 1."""
    dataset = canonical_dataset(args.dataset)
    inspection = inspect_file(args.file, dataset)
    if inspection.problems:
        count = len(inspection.problems)
        print(f"{args.file}: {count} problem{'s' if count > 1 else ''} as a dataset {dataset} file:",
              file=sys.stderr)
        for problem in inspection.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("\n".join(inspection.valid_summary().lines()))
    print(f"OK: {args.file} is a valid dataset {dataset} file")
    return 0


def download(args: argparse.Namespace) -> int:
    """Fetch the real files of --dataset (--role train/eval/all) into --data-dir, MD5-verified."""
    paths = download_dataset(args.dataset, args.data_dir, role=args.role, root=args.base_url)
    print(f"{len(paths)} file(s) ready in {args.data_dir}: {', '.join(p.name for p in paths)}")
    return 0


def synth(args: argparse.Namespace) -> int:
    """Write the synthetic stand-in of --dataset into DATA_DIR/synthetic (replacing what is there)."""
    dataset = canonical_dataset(args.dataset)
    out_dir = Path(args.data_dir) / SYNTHETIC_DIR
    for path in synthesise(dataset, out_dir, events=args.events, seed=args.seed, progress=True):
        print(f"{path}: {count_events(path)} showers, md5 {validate_file(path, dataset)} (SYNTHETIC, not Geant4)")
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Make the files of --dataset ready: real ones from --data-dir if there, else the stand-in."""
    files = ensure_data(args.dataset, args.data_dir)
    print(f"dataset {canonical_dataset(args.dataset)} ready ({files.source}): "
          f"{len(files.train)} training and {len(files.eval)} evaluation file(s)")
    return 0


def register(commands: Subcommands) -> None:
    """`data` and its four actions."""
    data = commands.add_parser("data", help="CaloChallenge files: validate, download, synthesise, prepare")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = actions.add_parser("validate", help="check a file against the official layout and print a summary")
    p.add_argument("file", help="HDF5 file in the CaloChallenge layout")
    add_dataset(p, required=True)
    p.set_defaults(run=validate)
    p = actions.add_parser("download", help="fetch the real files from Zenodo with MD5 check and resume")
    add_dataset(p, required=True)
    p.add_argument("--data-dir", default="data", help="where the files go (default: data)")
    p.add_argument("--role", choices=["train", "eval", "all"], default="all", help="which files")
    p.add_argument("--base-url", default=None, help="mirror to download from instead of Zenodo")
    p.set_defaults(run=download)
    p = actions.add_parser("synth", help="write the synthetic stand-in (train and evaluation files)")
    add_dataset(p, required=True)
    p.add_argument("--data-dir", default="data", help="files go to DATA_DIR/synthetic (default: data)")
    p.add_argument("--events", type=int, default=None, help="showers per file (default: as the real files)")
    p.add_argument("--seed", type=int, default=0,
                   help="base seed; the train and eval files use independent seeds spawned from it")
    p.set_defaults(run=synth)
    p = actions.add_parser("prepare", help="real files from the data folder if present, else the stand-in")
    add_dataset(p, required=True)
    p.add_argument("--data-dir", default="data", help="data folder (default: data)")
    p.set_defaults(run=prepare)
