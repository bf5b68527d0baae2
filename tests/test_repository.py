"""The repository itself: a fresh clone holds everything its tests read, and nothing else."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import DATA, ROOT


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.DOTALL)


def test_tests_and_bench_name_no_path_outside_the_checkout():
    outside = re.compile(
        r"ROOT\.parent|\bparent\.parent\.parent\b|/work/|[\"']\.\./|"
        r"[\"']shared[\"']"
    )
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("tests", "bench")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name != "test_repository.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if outside.search(line)
    ]
    assert hits == []


def test_each_test_data_source_has_its_readme_and_licence():
    sources = [p for p in DATA.iterdir() if p.is_dir()]
    assert {p.name for p in sources} == {"arc_test_suite", "fedora-devel-2010-01"}
    for source in sources:
        readme = (source / "README.md").read_text()
        assert "Source" in readme or "LICENSE" in readme, source
    assert "MIT" in (DATA / "arc_test_suite" / "LICENSE.txt").read_text()


def test_ci_runs_the_readme_test_command_in_a_clean_clone():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    install_test = _sh_blocks()[1]
    run_at = lines.index(install_test)
    clone_at = next(i for i, line in enumerate(lines) if line.startswith("git clone"))
    cd_at = next(i for i, line in enumerate(lines) if i > clone_at and line.startswith("cd "))
    assert clone_at < cd_at < run_at
    # The clone goes into a fresh temporary folder, so nothing sits beside it.
    assert any("mktemp -d" in line for line in lines[:clone_at])


def test_no_build_artefacts_are_committed_and_gitignore_covers_them():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [p for p in tracked if p.endswith((".whl", ".db", ".sqlite"))] == []
    probe = [
        "x-1.0-py3-none-any.whl",
        "copy.eml",
        ".venv/bin/python",
        ".venv",  # also when it is a link to a virtualenv elsewhere
        "venv/bin/python",
        "receiver.db",
        "receiver.db-wal",
        "data.sqlite3",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert sorted(ignored) == sorted(probe)


def test_first_steps_use_only_what_the_first_command_installs():
    install_run = _sh_blocks()[0]
    first_steps = (ROOT / "README.md").read_text().split("## First steps", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", first_steps, re.DOTALL).group(1)
    tools = {line.split()[0] for line in block.splitlines() if line.strip()}
    installed = set(re.search(r"apt-get install -y ([\w. -]+?) &&", install_run).group(1).split())
    assert tools - installed == {"threads-receiver"}
