"""The ARC test suite run through the `verify` path (chain validation cases).

Source: ValiMail's arc_test_suite (github.com/ValiMail/arc_test_suite, MIT licence, see
tests/data/arc_test_suite/LICENSE.txt), arc-draft-validation-tests.yml: each
scenario's messages with their expected cv, and the TXT records our test DNS serves.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import yaml

from receiver import config as configmod
from receiver.mail import read
from receiver.verify import Verifier
from tests.dns_server import DnsServer
from tests.helpers import DATA

SUITE = DATA / "arc_test_suite" / "arc-draft-validation-tests.yml"


def _cases():
    scenarios = list(yaml.safe_load_all(SUITE.read_text()))
    for n, scenario in enumerate(scenarios):
        for name, case in scenario["tests"].items():
            yield pytest.param(n, case, id=name)


@pytest.fixture(scope="module")
def suite_dns():
    """One DNS server for the module; each scenario's records are swapped in."""
    server = DnsServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scenarios():
    return list(yaml.safe_load_all(SUITE.read_text()))


def _message(text: str) -> bytes:
    # The YAML holds LF text; mail on the wire is CRLF.
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.mark.parametrize("scenario,case", list(_cases()))
def test_arc_validation_vector(suite_dns, scenarios, scenario, case):
    suite_dns.records.clear()
    suite_dns.records.update({k.lower(): v for k, v in scenarios[scenario]["txt-records"].items()})
    cfg = configmod.load(
        None,
        {"THREADS_RECEIVER_DNS_SERVERS": suite_dns.address, "THREADS_RECEIVER_DNS_TIMEOUT": "0.5"},
    )
    verifier = Verifier(cfg)

    async def go():
        try:
            return await verifier.verify(
                read(_message(case["message"] or "")),
                subscriber=None,
                received_at=dt.datetime.now(dt.UTC),
            )
        finally:
            await verifier.close()

    verdict = asyncio.run(go())
    # The suite leaves cv empty where a seal already says cv=fail; RFC 8617 5.2 makes such
    # a chain fail, and so do we.
    expected = (case["cv"] if case["cv"] is not None else "None").strip().lower() or "fail"
    assert verdict.detail["arc"]["cv"] == expected, verdict.detail["arc"]["reason"]
