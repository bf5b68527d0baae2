"""SECURITY.md states every limit with the default the code has."""

from __future__ import annotations

import re

from receiver.config import DEFAULTS
from tests.helpers import ROOT

LIMIT_SECTIONS = {
    "smtp": None,
    "tls": {"require_starttls", "min_version"},
    "auth": None,
    "parse": None,
    "imap": {"max_errors", "timeout", "max_sessions", "max_sessions_per_ip", "proxy_trusted"},
}


def _doc_table() -> dict[str, str]:
    text = (ROOT / "SECURITY.md").read_text()
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `(\w+\.\w+)` \| ([^|]+) \|", text, re.M)
    }


def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def test_every_limit_is_documented_with_its_default():
    table = _doc_table()
    skip = {"listen", "lmtp", "hostname"}
    for section, only in LIMIT_SECTIONS.items():
        for key, default in DEFAULTS[section].items():
            if key in skip or (only is not None and key not in only):
                continue
            name = f"{section}.{key}"
            assert name in table, f"{name} missing from SECURITY.md"
            assert table[name] == _shown(default), (name, table[name], default)
    for name, shown in table.items():
        section, key = name.split(".")
        assert _shown(DEFAULTS[section][key]) == shown, name


def test_both_systemd_units_keep_the_state_directory_private():
    """SECURITY.md says the state directory stays 0700: every unit that names it must set
    the mode, or systemd resets it to 0755 whenever that unit starts."""
    assert "`StateDirectoryMode=0700`" in (ROOT / "SECURITY.md").read_text()
    units = sorted((ROOT / "systemd").glob("*.service"))
    assert len(units) == 2
    for unit in units:
        lines = unit.read_text().splitlines()
        assert "StateDirectory=threads-receiver" in lines, unit.name
        assert "StateDirectoryMode=0700" in lines, unit.name
