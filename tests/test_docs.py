"""The README and the documentation pages: complete, linked, current, and honest.

The site itself is built by ``mkdocs build --strict`` in ``.ci/run``; these
checks need no MkDocs, so they run with the rest of the suite: every link
and anchor resolves (in the README too, which the site does not include),
every stack config key and command-line flag is documented, the generated
configuration reference is current, and the examples of the unit-testing
page pass as written.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import yaml

from condukt_egress.automation import MIN_PULUMI_VERSION
from condukt_egress.cli import COMMANDS, cli
from condukt_egress.spec import SESSION_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CI_TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt -e '.[dev]' "
    "&& .venv/bin/python -m pytest"
)


def _load_hook(name: str) -> ModuleType:
    """One of the MkDocs hooks in ``docs/hooks/``, imported from its file."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"hooks/{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_hook("reference")
"""The generator of the configuration reference."""
api_roles = _load_hook("api_roles")
"""The hook that shows the docstrings' Sphinx roles as code."""


def pages() -> list[Path]:
    """The README and every documentation page."""
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """``text`` without fenced code blocks, where links and headings are not Markdown."""
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)


def headings(text: str) -> Iterator[str]:
    """The text of every ATX heading, as rendered (code spans unwrapped)."""
    for match in re.finditer(r"^#{1,6} +(.+?) *#*$", prose(text), re.MULTILINE):
        yield match[1].replace("`", "")


def slug_mkdocs(heading: str) -> str:
    """The anchor Python-Markdown's ``toc`` extension gives a heading (``slugify``)."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def slug_github(heading: str) -> str:
    """The anchor GitHub gives a heading when it renders a Markdown file."""
    value = re.sub(r"[^\w\- ]", "", heading.lower())
    return value.replace(" ", "-")


def links(text: str) -> Iterator[str]:
    """The target of every inline Markdown link outside code."""
    body = re.sub(r"`[^`\n]*`", "", prose(text))
    for match in re.finditer(r"\]\(([^)\s]+)\)", body):
        yield match[1]


def api_object_exists(dotted: str) -> bool:
    """Whether an mkdocstrings anchor (``condukt_egress.EgressPolicy``) names a real object."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    return hasattr(module, attr)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # an external URL: not reachable from here
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT)}")
            continue
        if not anchor:
            continue
        if file == DOCS / "api.md" and api_object_exists(anchor):
            continue
        if file.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not a page")
            continue
        slugs = {slug_mkdocs(h) for h in headings(file.read_text(encoding="utf-8"))}
        if anchor not in slugs:
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, f"{page.name}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_anchors_are_the_same_on_github_and_the_site(page: Path) -> None:
    """A link to a heading works wherever the page is read, and names one heading."""
    found = list(headings(page.read_text(encoding="utf-8")))
    differ = [h for h in found if slug_mkdocs(h) != slug_github(h)]
    assert not differ, f"{page.name}: headings whose anchors differ on GitHub: {differ}"
    slugs = [slug_mkdocs(h) for h in found]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    assert not duplicates, f"{page.name}: headings sharing an anchor: {duplicates}"


def test_the_readme_is_short_and_keeps_the_ci_command() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250, "move detail into a page under docs/"
    assert CI_TEST_COMMAND in readme
    assert CI_TEST_COMMAND in (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert "## Development" in readme


def test_the_pulumi_cli_floor_is_stated_once_and_right() -> None:
    """Every page that names a Pulumi CLI minimum names the one the code enforces.

    A pinned version (the e2e suite's, say) is not a minimum and may differ.
    """
    floor = ".".join(map(str, MIN_PULUMI_VERSION))
    assert f"Pulumi CLI {floor} or newer" in README.read_text(encoding="utf-8")
    for page in pages():
        text = " ".join(page.read_text(encoding="utf-8").split())
        stated = re.findall(r"\b(3\.\d{3})(?:\+| or newer| or later)", text)  # not Python 3.11+
        stated += re.findall(r"older than (3\.\d{3})", text)
        assert set(stated) <= {floor}, f"{page.name} states a Pulumi CLI minimum of {stated}"


HISTORY = {
    "a commit hash": re.compile(r"(?<![\w/.-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"),
    "an issue number": re.compile(
        r"\b(?:issues?|PR|pull\s+request)\s+#?\d+|(?<![\w&/])#\d+\b", re.I
    ),
    "a placeholder": re.compile(r"<owner>|<org>|TODO|FIXME"),
    "history": re.compile(
        r"\b(?:used\s+to|no\s+longer|the\s+first\s+release|before\s+issue)\b", re.I
    ),
}


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_pages_carry_no_hashes_issue_numbers_or_history(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    found = {what: pattern.findall(text) for what, pattern in HISTORY.items()}
    assert not any(found.values()), f"{page.name}: {found}"


def documented_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in pages())


def test_every_pulumi_yaml_key_is_documented() -> None:
    config = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))["config"]
    docs = documented_text()
    missing = [key for key in config if f"`{key}`" not in docs]
    assert not missing, f"stack config keys the docs never name: {missing}"


def test_every_cli_flag_is_documented() -> None:
    """Walks the click command tree, so a new command or flag is caught wherever it lands."""
    docs = documented_text()
    missing = []
    for full, command in reference.commands():
        if f"`{full}`" not in docs:
            missing.append(full)
        for flag in reference.flag_names(command):
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", docs):
                missing.append(f"{full} {flag}")
    assert missing == [], f"undocumented commands and flags: {missing}"


def test_the_command_walk_sees_every_command() -> None:
    """The walk the two tests above rely on finds every command the CLI offers."""
    walked = {full.removeprefix("condukt-egress ") for full, _ in reference.commands()}
    assert set(COMMANDS) <= walked
    ctx = click.Context(cli)
    assert set(cli.list_commands(ctx)) <= walked


def test_the_configuration_reference_is_current() -> None:
    generated: set[str] = set()
    for path in reference.PAGES:
        page = path.read_text(encoding="utf-8")
        generated |= set(re.findall(r"BEGIN GENERATED ([a-z-]+)", page))
        assert reference.expand(page) == page, (
            f"{path.name} is stale: run `.venv/bin/python docs/hooks/reference.py`"
        )
    assert generated == set(reference.SECTIONS)


def test_the_security_model_lists_every_pod_rule_in_the_table_words() -> None:
    from condukt_egress.podrules import POD_RULES  # noqa: PLC0415

    page = (reference.PAGE.parent / "security.md").read_text(encoding="utf-8")
    for rule in POD_RULES:
        assert f"(`{rule.id}`): " in page, rule.id
        assert reference._prose(rule.why) in page, rule.id


def test_the_configuration_reference_names_every_option_once() -> None:
    page = reference.PAGE.read_text(encoding="utf-8")
    for opt in SESSION_OPTIONS:
        assert page.count(f"### `{opt.config}`") == 1, opt.config
        assert f"`{opt.name}`" in page, opt.name


def test_sphinx_roles_show_as_sphinx_shows_them() -> None:
    html = (
        "An :class:<code>~condukt_egress.policy.EgressPolicy</code> or see "
        ":func:<code>condukt_egress.ca.generate_ca</code>; :note: stays."
    )
    assert api_roles.without_roles(html) == (
        "An <code>EgressPolicy</code> or see <code>condukt_egress.ca.generate_ca</code>; "
        ":note: stays."
    )


def test_every_hook_is_registered() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_IgnoreTags)  # noqa: S506 - a SafeLoader subclass
    on_disk = sorted(f"docs/hooks/{p.name}" for p in (DOCS / "hooks").glob("*.py"))
    assert sorted(config["hooks"]) == on_disk


class _IgnoreTags(yaml.SafeLoader):
    """Reads ``mkdocs.yml``, whose ``!!python/name`` tags only MkDocs resolves."""


_IgnoreTags.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_pages(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from nav_pages(value)


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_IgnoreTags)  # noqa: S506 - a SafeLoader subclass
    listed = list(nav_pages(config["nav"]))
    on_disk = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(listed) == on_disk, "add each page under docs/ to `nav` in mkdocs.yml, once"


def test_the_unit_testing_examples_pass_as_written(tmp_path: Path) -> None:
    """The page's Python blocks are test modules a reader copies; run them as one would."""
    text = (DOCS / "unit-testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        (tmp_path / f"test_example_{i}.py").write_text(block, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    for i in range(len(blocks)):  # one process each: set_mocks is process-wide
        name = f"test_example_{i}.py"
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert re.search(r"\b[1-9]\d* passed", run.stdout), run.stdout
