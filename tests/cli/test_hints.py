"""Every hint that names an ``embedding-studio`` command names one that exists, with options it has.

Hints are collected from every string literal in the package (messages, help texts, docstrings, HTML)
and from the README and docs, then checked against the real typer app: the command path exists, each
``--option`` belongs to that command, and the command's required arguments are not left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from embedding_studio.cli.main import app

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = REPOSITORY / "src" / "embedding_studio"

# What follows "embedding-studio " up to where a command line ends in prose, markup or a shell comment.
_MENTION = re.compile(r"""embedding-studio[ \t]+((?:"[^"\n]*"|'[^'\n]*'|[^`"'()\n;|<#])*)""")
_PROSE_BREAKS = re.compile(r",\s|\s—\s|\sor\s|\sthen\s|\.\s|\.$|:\s")


def _strings_in_package() -> list[tuple[str, str]]:
    """Every string literal; an f-string as one text with VALUE where it formats something in."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parts_of_f_strings = {
            id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(part.value if isinstance(part, ast.Constant) else "VALUE" for part in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts_of_f_strings:
                text = node.value
            else:
                continue
            if "embedding-studio" in text:
                found.append((f"{path.relative_to(REPOSITORY)}:{node.lineno}", text))
    return found


def _strings_in_docs() -> list[tuple[str, str]]:
    paths = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]
    return [
        (f"{path.relative_to(REPOSITORY)}:{number}", line)
        for path in paths
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "embedding-studio" in line
    ]


def command_lines(text: str) -> list[list[str]]:
    """The words of each ``embedding-studio …`` command line in a text, stopped where the prose resumes."""
    lines = []
    for match in _MENTION.finditer(text):
        words = _PROSE_BREAKS.split(match.group(1), maxsplit=1)[0].split()
        if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
            lines.append([word for word in words if word != "\\"])
    return lines


def problem_with(words: list[str], root: Any) -> str | None:
    """Why a command line would not run as written (None when it would), checked against the command tree.

    Typer ships its own copy of click, so groups, options and arguments are told apart by what they have.
    """
    command, depth = root, 0
    while hasattr(command, "commands") and depth < len(words) and words[depth] in command.commands:
        command = command.commands[words[depth]]
        depth += 1
    if hasattr(command, "commands"):  # a group named alone ("the `embedding-studio db` commands") is fine
        return f"no command `{' '.join(words[: depth + 1])}`" if depth < len(words) else None
    options = {name: parameter for parameter in command.params for name in (*parameter.opts, *parameter.secondary_opts)}
    positional = 0
    rest = iter(words[depth:])
    for word in rest:
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name == "--help":
                return None
            parameter = options.get(name)
            if parameter is None or parameter.param_type_name != "option":
                return f"`{' '.join(words[:depth])}` has no option {name}"
            if not parameter.is_flag and not parameter.count and "=" not in word:
                next(rest, None)  # its value
        elif word not in ("...", "…"):
            positional += 1
    required = [
        parameter.name for parameter in command.params if parameter.param_type_name == "argument" and parameter.required
    ]
    if positional < len(required):
        return f"`{' '.join(words[:depth])}` needs {', '.join(str(name).upper() for name in required)}"
    return None


@pytest.fixture(scope="module")
def root() -> Any:
    return typer.main.get_command(app)


def test_the_checker_catches_the_hints_that_pointed_nowhere(root: Any) -> None:
    assert problem_with(["report", "3f9c2a", "--dataset", "x"], root) == "`report` has no option --dataset"
    assert problem_with(["reindex", "--deploy-as-blue"], root) == "`reindex` needs DEST_MODEL_ID"
    assert problem_with(["clickstream", "relase"], root) == "no command `clickstream relase`"
    assert problem_with(["finetune", "--batch-id", "1", "--deploy-as-blue", "--follow"], root) is None
    assert command_lines("pass --dataset to `embedding-studio report 3f --out x.html`, then open it") == [
        ["report", "3f", "--out", "x.html"]
    ]


def test_every_hint_names_a_command_and_options_that_exist(root: Any) -> None:
    mentions = [
        (where, words) for where, text in [*_strings_in_package(), *_strings_in_docs()] for words in command_lines(text)
    ]
    assert len(mentions) >= 40  # the collection itself works: the package and README mention many commands
    problems = [
        f"{where}: embedding-studio {' '.join(words)} — {problem}"
        for where, words in mentions
        if (problem := problem_with(words, root))
    ]
    assert not problems, "\n".join(problems)
