"""The options several commands share, each added in one place: the command modules call these while
registering their sub-commands."""

from __future__ import annotations

import argparse
from argparse import ArgumentParser
from typing import TypeAlias

from calo_ablate.config import PROFILES

__all__ = ["Subcommands", "add_dataset", "add_overrides", "add_profile", "add_registry", "add_results_dir",
           "add_run_options", "add_tracking_uri"]

# what `add_subparsers` returns: each command module adds its sub-commands to it
Subcommands: TypeAlias = "argparse._SubParsersAction[ArgumentParser]"

DATASET_HELP = "CaloChallenge dataset: 1 (= 1-photons), 1-photons, 1-pions, 2 or 3"
PROFILE_HELP = "sizes: smoke (seconds), quick (default, minutes on a laptop), full (published, GPU)"


def add_dataset(parser: ArgumentParser, *, required: bool = False) -> None:
    """--dataset: required, or dataset 1 by default."""
    parser.add_argument("--dataset", required=required, default=None if required else "1", help=DATASET_HELP)


def add_profile(parser: ArgumentParser, help_text: str | None = PROFILE_HELP) -> None:
    """--profile, quick by default."""
    parser.add_argument("--profile", default="quick", choices=PROFILES, help=help_text)


def add_overrides(parser: ArgumentParser, help_text: str | None) -> None:
    """--set KEY=VALUE (repeatable), collected in args.overrides."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=help_text)


def add_tracking_uri(parser: ArgumentParser, help_text: str) -> None:
    """--tracking-uri, None by default (each command says in help_text which store it then uses)."""
    parser.add_argument("--tracking-uri", default=None, help=help_text)


def add_run_options(parser: ArgumentParser) -> None:
    """What a training needs, shared by `train` and `ablate`: dataset, profile, overrides, MLflow store."""
    add_dataset(parser)
    add_profile(parser)
    add_overrides(parser, "override a config value, e.g. --set train.lr=1e-3 (repeatable)")
    add_tracking_uri(parser, "MLflow tracking URI (default: a SQLite store under results/)")


def add_registry(parser: ArgumentParser) -> None:
    parser.add_argument("--registry", default=None, help="registry YAML (default: experiments/ablations.yaml)")


def add_results_dir(parser: ArgumentParser) -> None:
    parser.add_argument("--results-dir", default="results", help="where study folders go (default: results)")
