"""docs/cli.md documents every command, option and argument of the `logq` CLI.

The rule the docs follow: each command has a heading holding its full path (``## `logq
dump` ``), and inside that section every option name and argument appears in backticks
(`` `--deep` ``, `` `--data DIR` ``, `` `PATH...` ``). ``-h``/``--help`` is documented once,
in the ``logq`` section. Adding a command or option without its docs fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
from logq.cli import main

from tests import support

DOCS = support.REPO / "docs" / "cli.md"
HEADING = re.compile(r"^#{1,6}\s+`?(logq(?: [A-Za-z0-9][\w-]*)*)`?\s*$", re.M)


def walk(cmd: click.Command, path: str = "logq") -> Iterator[tuple[str, click.Command]]:
    """Every (command path, command) of the tree, parents first; hidden ones skipped."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, f"{path} {name}")


def sections(doc: str) -> dict[str, str]:
    """Command path -> text of its section (up to the next command heading)."""
    marks = list(HEADING.finditer(doc))
    out: dict[str, str] = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        out[m.group(1)] = doc[m.end() : nxt.start() if nxt else len(doc)]
    return out


def _names(cmd: click.Command, param: click.Parameter, is_root: bool) -> list[str]:
    if isinstance(param, click.Option):
        if param.hidden:
            return []
        names = list(param.opts) + list(param.secondary_opts)
        if not is_root and set(names) <= {"-h", "--help"}:
            return []  # documented once, in the `logq` section
        return names
    return [param.human_readable_name.strip("[].")]


def undocumented(root: click.Command, doc: str) -> list[str]:
    """One message per command without a section and per option/argument missing from it."""
    found = sections(doc)
    missing: list[str] = []
    for path, cmd in walk(root):
        text = found.get(path)
        if text is None:
            missing.append(f"command `{path}` has no section in docs/cli.md")
            continue
        for param in cmd.get_params(click.Context(cmd)):
            for name in _names(cmd, param, path == "logq"):
                if not re.search(r"`" + re.escape(name) + r"(?![\w-])", text):
                    missing.append(f"`{path}`: {name} is not documented in its section")
    return missing


def test_every_command_option_and_argument_is_documented() -> None:
    assert undocumented(main, DOCS.read_text(encoding="utf-8")) == []


def test_no_section_documents_a_command_that_does_not_exist() -> None:
    real = {path for path, _ in walk(main)}
    assert set(sections(DOCS.read_text(encoding="utf-8"))) <= real


def test_the_walk_sees_the_real_tree() -> None:
    tree = dict(walk(main))
    assert {"logq", "logq dump"} <= set(tree)
    opts = {o for p in tree["logq dump"].params if isinstance(p, click.Option) for o in p.opts}
    assert {"--deep", "--print-data", "--verify-index", "--json"} <= opts


def test_the_check_fails_for_an_undocumented_command_option_or_argument() -> None:
    doc = DOCS.read_text(encoding="utf-8")

    @click.group()
    @click.option("--data")
    def root(data: str) -> None: ...

    @root.command("dump")
    @click.argument("paths", nargs=-1, metavar="PATH...")
    @click.option("--deep", is_flag=True)
    @click.option("--frobnicate", is_flag=True)
    def dump(paths: tuple[str, ...], deep: bool, frobnicate: bool) -> None: ...

    @root.group("widgets")
    def widgets() -> None: ...

    @widgets.command("vanish")
    @click.argument("name")
    def vanish(name: str) -> None: ...

    problems = undocumented(root, doc)
    assert "`logq dump`: --frobnicate is not documented in its section" in problems
    assert "command `logq widgets` has no section in docs/cli.md" in problems
    assert "command `logq widgets vanish` has no section in docs/cli.md" in problems
    assert not any("--deep" in p or "PATH" in p or "--data" in p for p in problems)

    without_deep = doc.replace("`--deep`", "deep")
    assert "`logq dump`: --deep is not documented in its section" in undocumented(main, without_deep)
    with_widgets = doc + "\n## `logq widgets`\n\n## logq widgets vanish\n\n`NAME`\n"
    assert not any("widgets" in p for p in undocumented(root, with_widgets))
