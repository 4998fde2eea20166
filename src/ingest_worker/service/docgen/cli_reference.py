"""The command-line reference, rendered from `ingest_worker.service.cli.build_parser`."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from ingest_worker.service.docgen.markdown import GENERATED_NOTE, cell

PROG = "ingest-worker"
WIDTH = 88


@contextlib.contextmanager
def _clean_environment() -> Iterator[None]:
    """Hide `INGEST_*` variables, so that defaults read from them render as their built-ins."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("INGEST_")}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


def _subcommands(
    parser: argparse.ArgumentParser,
) -> list[tuple[list[str], str, argparse.ArgumentParser]]:
    """(names, help, parser) per subcommand, aliases grouped with their primary name."""
    found: list[tuple[list[str], str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        by_parser: dict[int, int] = {}
        for name, sub in action.choices.items():
            if id(sub) in by_parser:
                found[by_parser[id(sub)]][0].append(name)
                continue
            by_parser[id(sub)] = len(found)
            found.append(([name], helps.get(name, ""), sub))
    return found


def _usage(parser: argparse.ArgumentParser, prog: str) -> str:
    formatter = argparse.HelpFormatter(prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, "")
    return formatter.format_help().strip()


def _help(action: argparse.Action, prog: str) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    formatter = argparse.HelpFormatter(prog, width=WIDTH)
    return formatter._expand_help(action)


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return ""
    if action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    return f"`{action.default}`"


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(action.option_strings)
        if action.nargs == 0:
            return f"`{flags}`"
        metavar = action.metavar or action.dest.upper()
        if action.choices is not None and action.metavar is None:
            metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
        return f"`{flags} {metavar}`"
    return f"`{action.metavar or action.dest}`"


def _arguments(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        required = " (required)" if action.required and action.option_strings else ""
        rows.append(
            f"| {_name(action)} | {cell(_help(action, prog))}{required} | {_default(action)} |"
        )
    if not rows:
        return ["No arguments."]
    return ["| argument | meaning | default |", "|---|---|---|", *rows]


def cli_reference() -> str:
    """The page: every subcommand, its usage, its arguments, their help and defaults."""
    from ingest_worker.service.cli import build_parser

    with _clean_environment():
        parser = build_parser()
    subcommands = _subcommands(parser)
    lines = [
        "# Command-line reference",
        "",
        GENERATED_NOTE,
        "",
        parser.description or "",
        "",
        "```text",
        _usage(parser, PROG),
        "```",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for names, summary, _ in subcommands:
        lines.append(f"| [`{names[0]}`](#{names[0]}) | {cell(summary)} |")
    for names, summary, sub in subcommands:
        prog = f"{PROG} {names[0]}"
        lines += ["", f"## {names[0]}", ""]
        if summary:
            lines += [
                summary[:1].upper() + summary[1:] + ("" if summary.endswith(".") else "."),
                "",
            ]
        if len(names) > 1:
            aliases = ", ".join(f"`{name}`" for name in names[1:])
            lines += [f"Also spelled {aliases}.", ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```text", _usage(sub, prog), "```", "", *_arguments(sub, prog)]
        if sub.epilog:
            lines += ["", sub.epilog]
    return "\n".join(lines).rstrip() + "\n"
