"""The README keeps up with the code: every code, environment variable and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from etl.checks.codes import CODES
from etl.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_code_is_documented() -> None:
    missing = [code for code in CODES if f"`{code}`" not in README]
    assert not missing


def test_every_environment_variable_is_documented() -> None:
    sources = [
        *ROOT.joinpath("etl").rglob("*.py"),
        ROOT / "Makefile",
        *ROOT.joinpath("scripts").glob("*"),
    ]
    used = set()
    for path in sources:
        used |= set(re.findall(r"CREDITPIPE_[A-Z_]+", path.read_text(encoding="utf-8")))
    missing = sorted(v for v in used if f"`{v}`" not in README)
    assert used and not missing


def test_every_command_is_documented() -> None:
    import typer.main

    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        names += [f"creditpipe {name} {s}" for s in sub] if sub else [f"creditpipe {name}"]
    missing = [n for n in names if n not in README]
    assert names and not missing


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
