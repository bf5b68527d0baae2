"""What an install pulls in: bounded dependencies, PostgreSQL as an extra, one version."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from importlib.metadata import version

import receiver
from tests.helpers import ROOT, env_for

# Run the CLI with psycopg2 unimportable, as on a `pip install .` without the extra.
NO_PSYCOPG2 = "import sys; sys.modules['psycopg2'] = None; from receiver.cli import main; main()"


def _init_without_psycopg2(tmp_path, env: dict) -> subprocess.CompletedProcess:
    """`init` in a Python where psycopg2 cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", NO_PSYCOPG2, "init", "--dir", str(tmp_path / "rx")]
        + ["--domain", "push.example"],
        env=env,
        capture_output=True,
        text=True,
    )


def _requirements() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():
        lines += extra.splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_every_dependency_has_an_upper_bound():
    """An install must not pick a major version the suite has never run with."""
    unbounded = [r for r in _requirements() if not re.search(r",\s*<", r)]
    assert unbounded == []


def test_psycopg2_is_only_in_the_postgresql_extra():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "psycopg2" not in cfg["options"]["install_requires"]
    assert "psycopg2-binary" in cfg["options.extras_require"]["postgresql"]


def test_sqlite_works_without_psycopg2(tmp_path):
    r = _init_without_psycopg2(tmp_path, env_for(tmp_path / "none.toml"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rx" / "receiver.db").exists()


def test_postgresql_url_without_driver_is_one_line(tmp_path):
    env = env_for(tmp_path / "none.toml", THREADS_RECEIVER_DB="postgresql://u@127.0.0.1:1/x")
    r = _init_without_psycopg2(tmp_path, env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "Error: a postgresql:// database needs the PostgreSQL driver: "
        "pip install 'threads-receiver[postgresql]' (or psycopg2-binary)"
    ]


def test_one_version_everywhere():
    cli = subprocess.run(
        [sys.executable, "-m", "receiver", "--version"],
        env=env_for(ROOT / "none.toml"),
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.split()[-1] == receiver.__version__ == version("threads-receiver")
