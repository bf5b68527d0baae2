"""Config: the template shows every key with its default; env and file overrides; errors."""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib

import pytest

from receiver import config
from tests.helpers import ROOT


def test_example_config_is_the_packaged_template():
    assert (ROOT / "config" / "receiver.toml").read_text() == (
        ROOT / "receiver" / "receiver.toml"
    ).read_text()


def test_template_shows_every_key_with_its_default():
    shown = tomllib.loads((ROOT / "config" / "receiver.toml").read_text())
    expected = copy.deepcopy(config.DEFAULTS)
    expected["receiver"]["domains"] = ["push.example.com"]
    assert shown == expected


def test_env_overrides_file(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        '[smtp]\nlisten = "0.0.0.0:25"\nmax_recipients = 5\n[database]\nlock_timeout = 2\n'
    )
    cfg = config.load(
        path,
        {
            "THREADS_RECEIVER_SMTP_MAX_RECIPIENTS": "7",
            "THREADS_RECEIVER_DB": "postgresql://u@h/db",
            "THREADS_RECEIVER_DNS_SERVERS": "127.0.0.1:5353, 10.0.0.1:53",
            "THREADS_RECEIVER_SMTP_LMTP": "yes",
        },
    )
    assert cfg.smtp.listen == "0.0.0.0:25"
    assert cfg.smtp.max_recipients == 7
    assert cfg.smtp.lmtp is True
    assert cfg.database.lock_timeout == 2.0
    assert cfg.database_url == "postgresql://u@h/db"
    assert cfg.dns.servers == ("127.0.0.1:5353", "10.0.0.1:53")


def test_sqlite_path_is_relative_to_the_config(tmp_path):
    path = tmp_path / "etc" / "r.toml"
    path.parent.mkdir()
    path.write_text("")
    assert config.load(path, {}).database_url == f"sqlite:///{tmp_path / 'etc' / 'receiver.db'}"


@pytest.mark.parametrize(
    "text, env, words",
    [
        ("[smtp]\nlisten = 25\n", {}, "smtp.listen must be str"),
        ("[smtp]\nnope = 1\n", {}, "unknown key smtp.nope"),
        ("[nope]\n", {}, "unknown section [nope]"),
        ('[policy]\naltered = "drop"\n', {}, "policy.altered"),
        ("not toml = = =", {}, "r.toml"),
        ("", {"THREADS_RECEIVER_SMTP_MAX_RECIPIENTS": "many"}, "expected a whole number"),
        ("", {"THREADS_RECEIVER_DB": "mysql://x"}, "database.url"),
        ("", {"THREADS_RECEIVER_SMTP_LISTEN": "nowhere"}, "HOST:PORT"),
        ('[smtp]\ntrusted_networks = ["postfix"]\n', {}, "smtp.trusted_networks"),
        ("[smtp]\nstress_threshold = 0.0\n", {}, "smtp.stress_threshold"),
        ("[smtp]\nbacklog = 0\n", {}, "smtp.backlog"),
        ('[tls]\nciphers = "NO-SUCH-SUITE"\n', {}, "tls.ciphers"),
        ('[imap]\nlisten = "127.0.0.1:143"\n', {}, "imap.listen needs tls.cert_file"),
    ],
)
def test_bad_config_says_which_key(tmp_path, text, env, words):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(path, env)
    assert words in str(e.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(tmp_path / "absent.toml", {})


def test_config_is_frozen_and_typed():
    cfg = config.load(None, {"THREADS_RECEIVER_DNS_SERVERS": "127.0.0.1:5353"})
    assert cfg.dns.servers == ("127.0.0.1:5353",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.smtp.max_errors = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.smtp = cfg.smtp  # type: ignore[misc]


def test_a_missing_wire_fails_loudly():
    """The parts that take config values have no defaults that could stand in for them."""
    from receiver.parse.worker import Budget
    from receiver.store.deliveries import Writer
    from receiver.threads.subject import SubjectRule

    for make in (SubjectRule, Budget, lambda: Writer(None, 64)):
        with pytest.raises(TypeError):
            make()


def test_readme_toml_snippets_are_valid_config(tmp_path):
    """What the README tells an admin to write (e.g. "Behind Postfix") loads."""
    snippets = re.findall(r"```toml\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert snippets
    for i, text in enumerate(snippets):
        path = tmp_path / f"{i}.toml"
        path.write_text(text)
        config.load(path, {})
