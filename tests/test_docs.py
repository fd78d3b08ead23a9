"""Every fenced code block in README.md and docs/*.md runs here, so the documentation cannot drift from the code.

- ```python blocks are executed, each in a fresh namespace, in a working folder prepared with trained runs.
- ```bash / ```sh / ```console blocks (console: the lines after ``$ ``): each ``landscape ...`` command is run for
  real through click. A block marked ``<!-- docs-test: parse-only (why) -->`` on the line before its fence is only
  parsed: the command is resolved and ``make_context`` checks its options, choices, ranges and the paths click
  checks (for work that takes minutes: the full demo, CIFAR runs, studies, benchmarks). ``python benchmarks/X.py ...`` lines are checked
  against the script (its sub-command and options exist), ``pip install`` lines against pyproject.toml's extras.
- ```python blocks marked ``<!-- docs-test: compile-only (why) -->`` are templates with placeholders: compiled only.
- ```toml blocks that declare a study are loaded with ``load_study``; ```text blocks (file contents, output) are not
  run.

The prepared folder (``runs/resnet8``, ``runs/fmmnet8``, ``runs/se_resnet8``: digits runs of the conftest fixtures;
``data/cifar-10-batches-py``: a tiny CIFAR-10 folder; ``analyses/``: the repository's studies) is copied afresh for each markdown file, whose blocks then run
in order, so a block may use what an earlier block of the same page wrote.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import write_cifar_folder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"python", "bash", "sh", "console"}
SHELL_LANGS = {"bash", "sh", "console"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<mode>[a-z-]+)\s*(\((?P<why>[^)]*)\))?\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[A-Za-z0-9_+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    mode: str  # "run", "parse-only" (shell) or "compile-only" (python templates)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a markdown page, with the docs-test marker on the line before each fence."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = len(m["indent"]), i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.name}:{start + 1}: code fence never closed")
        marker = MARKER.search(lines[start - 1]) if start else None
        mode = marker["mode"] if marker else "run"
        if mode not in ("run", "parse-only", "compile-only"):
            raise AssertionError(f"{page.name}:{start + 1}: unknown docs-test mode '{mode}' (run, parse-only, "
                                 "compile-only)")
        blocks.append(Block(page, start + 1, m["lang"].lower(), "\n".join(body) + "\n", mode))
        i += 1
    return blocks


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, ``&&`` chains split."""
    lines = block.text.splitlines()
    if block.lang == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    commands = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        current: list[str] = []
        for tok in [*tokens, "&&"]:
            if tok in ("&&", ";"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(tok)
    return commands


# ---------------------------------------------------------------------------------------------------------------
# Checks for each kind of command


def parse_landscape(args: list[str]) -> None:
    """Resolve a ``landscape`` command and let click parse its arguments (options, choices, existing paths)."""
    from landscape.cli import main

    ctx = main.make_context("landscape", list(args))
    rest = [*ctx._protected_args, *ctx.args] if hasattr(ctx, "_protected_args") else [*ctx.protected_args, *ctx.args]
    assert rest, f"no sub-command in 'landscape {shlex.join(args)}'"
    name, cmd, sub_args = main.resolve_command(ctx, rest)
    assert cmd is not None, f"unknown command '{rest[0]}'"
    with cmd.make_context(name, list(sub_args), parent=ctx):
        pass


def run_landscape(args: list[str]) -> None:
    from landscape.cli import main

    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, f"'landscape {shlex.join(args)}' exited {res.exit_code}:\n{res.output}"


def check_pip(args: list[str]) -> None:
    """``pip install ... -e ".[a,b]"``: the extras named must exist in pyproject.toml."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for tok in args:
        m = re.fullmatch(r"\.\[(?P<names>[^\]]+)\]", tok)
        if m:
            missing = set(m["names"].split(",")) - set(extras)
            assert not missing, f"pip extras {sorted(missing)} are not in pyproject.toml ({sorted(extras)})"
    assert "-e" in args, f"the set-up installs the working tree: {shlex.join(args)}"


def check_script(script: str, args: list[str]) -> None:
    """``python SCRIPT.py [SUB] --opt ...``: the script exists and declares the sub-command and every option."""
    path = ROOT / script
    assert path.is_file(), f"{script} does not exist"
    source = path.read_text()
    if args and not args[0].startswith("-"):
        assert f'add_parser("{args[0]}")' in source, f"{script} has no sub-command '{args[0]}'"
    for tok in args:
        if tok.startswith("--"):
            opt = tok.split("=", 1)[0]
            assert f'"{opt}"' in source, f"{script} has no option {opt}"


def check_shell_command(cmd: list[str], mode: str) -> None:
    head, *args = cmd
    if head == "landscape":
        (parse_landscape if mode == "parse-only" else run_landscape)(args)
    elif head in ("python", "python3") and args[:3] == ["-m", "pip", "install"]:
        check_pip(args[3:])
    elif head in ("python", "python3") and args[:2] == ["-m", "pytest"]:
        pass  # this suite itself
    elif head in ("python", "python3") and args and args[0].endswith(".py"):
        check_script(args[0], args[1:])
    else:
        raise AssertionError(f"the docs test does not know how to check '{shlex.join(cmd)}'")


# ---------------------------------------------------------------------------------------------------------------
# The prepared working folder


@pytest.fixture(scope="session")
def docs_template(tmp_path_factory, digits_run, digits_fmm_run, se_digits_ckpt) -> Path:
    """runs/resnet8, runs/fmmnet8, runs/se_resnet8 (digits) and data/cifar-10-batches-py, as the pages assume."""
    base = tmp_path_factory.mktemp("docs_template")
    for name, run in (("resnet8", digits_run), ("fmmnet8", digits_fmm_run), ("se_resnet8", se_digits_ckpt.parent)):
        shutil.copytree(run, base / "runs" / name)
    write_cifar_folder(base / "data" / "cifar-10-batches-py")
    shutil.copytree(ROOT / "analyses", base / "analyses")  # the studies the pages run
    return base


def test_pages_exist_and_readme_is_short() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "surface.md", "hessian.md", "predictiveness.md", "inputspace.md", "attention.md",
            "models-data-training.md", "studies.md", "reliability.md", "development.md"} <= names, names
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_links_resolve() -> None:
    """Relative links and images in every page point at files that exist."""
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_repository_studies_load() -> None:
    """The studies in analyses/ that the pages point to are valid (checked as a whole, before any work)."""
    from landscape.cli.study import load_study

    studies = sorted((ROOT / "analyses").glob("*.toml"))
    assert studies
    for path in studies:
        load_study(path)


def test_marker_rules() -> None:
    """A parse-only marker sits on a shell block, a compile-only one on a python block, and each says why."""
    for page in PAGES:
        for block in read_blocks(page):
            if block.mode != "run":
                langs = SHELL_LANGS if block.mode == "parse-only" else {"python"}
                assert block.lang in langs, f"{block.where}: {block.mode} applies to {sorted(langs)} blocks"
                line = page.read_text().splitlines()[block.line - 2]
                assert MARKER.search(line)["why"], f"{block.where}: say why a block is {block.mode}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_blocks_run(page: Path, docs_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    shutil.copytree(docs_template, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for block in read_blocks(page):
        try:
            if block.lang == "python" and block.mode == "compile-only":
                compile(block.text, block.where, "exec")
            elif block.lang == "python":
                exec(compile(block.text, block.where, "exec"), {"__name__": "__docs__"})
            elif block.lang in SHELL_LANGS:
                commands = shell_commands(block)
                assert commands, "an empty shell block"
                for cmd in commands:
                    check_shell_command(cmd, block.mode)
            elif block.lang == "toml" and "[study]" in block.text:
                from landscape.cli.study import load_study

                study = work / "docs-study.toml"
                study.write_text(block.text)
                load_study(study)
        except (AssertionError, Exception, SystemExit) as exc:  # name the block in every failure
            if isinstance(exc, click.exceptions.Exit) and exc.exit_code == 0:
                continue
            raise AssertionError(f"{block.where} ({block.lang}, {block.mode}): {type(exc).__name__}: {exc}") from exc
        finally:
            import matplotlib.pyplot as plt

            plt.close("all")


def test_checks_catch_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks this file applies can fail: unknown options, bad choices, unknown commands and scripts."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt.pt").write_bytes(b"")
    parse_landscape(["surface", "ckpt.pt", "--x", "-1:1:5", "--norm", "filter"])
    parse_landscape(["--debug", "models", "--filter", "resnet"])
    for bad in (["surface", "ckpt.pt", "--no-such-option"], ["surface", "ckpt.pt", "--norm", "nope"],
                ["train", "resnet8", "--epochs", "0"], ["no-such-command"]):
        with pytest.raises((click.UsageError, SystemExit, AssertionError)):
            parse_landscape(bad)
    with pytest.raises(AssertionError, match="no option --nope"):
        check_script("benchmarks/surface.py", ["radii", "--nope", "1"])
    with pytest.raises(AssertionError, match="no sub-command"):
        check_script("benchmarks/surface.py", ["sideways"])
    with pytest.raises(AssertionError, match="not in pyproject"):
        check_pip(["-e", ".[test,nonexistent]"])
    with pytest.raises(AssertionError, match="exited 2"):
        run_landscape(["models", "--bogus"])
    block = Block(ROOT / "README.md", 1, "bash", "landscape models \\\n  --filter x  # comment\nls && pwd\n", "run")
    assert shell_commands(block) == [["landscape", "models", "--filter", "x"], ["ls"], ["pwd"]]
