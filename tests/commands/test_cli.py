"""The `calo-ablate` command as the README presents it: every command of its table exists and answers
`--help`, the table lists every command, and errors end in one line and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from calo_ablate.cli import build_parser, main
from calo_ablate.commands import data

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_commands() -> list[tuple[str, ...]]:
    """The command words of each row of the README's command table (`data validate FILE --dataset D` -> data,
    validate)."""
    table = README.read_text().split("| command | what it does |")[1].split("\n\n")[0]
    rows = re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE)
    return [tuple(re.match(r"[a-z][a-z ]*[a-z]", row).group().split()) for row in rows]


def _parser_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable (sub-)command of the parser: the leaves of its tree of sub-parsers."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [path]
    return [leaf for name, sub in groups[0].choices.items() for leaf in _parser_commands(sub, (*path, name))]


def test_the_readme_table_lists_exactly_the_parsers_commands() -> None:
    assert len(_readme_commands()) > 10
    assert sorted(_readme_commands()) == sorted(_parser_commands(build_parser()))


@pytest.mark.parametrize("command", _readme_commands(), ids=" ".join)
def test_every_readme_command_answers_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: calo-ablate {' '.join(command)} ")


def test_an_error_is_one_line_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", "showers.hdf5", "--dataset", "7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("calo-ablate: error: ") and err.count("\n") == 1 and "'7'" in err


def test_ctrl_c_says_how_to_resume_with_exit_code_130(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "prepare", interrupted)
    assert main(["data", "prepare", "--dataset", "1"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
