"""The delivery record: one request type, one mapping to its row (issue 12)."""

from __future__ import annotations

import datetime as dt
import hashlib

from receiver.delivery import QUARANTINED, DeliveryRequest, Envelope
from receiver.parse import parse_message
from receiver.store.deliveries import compress, delivery_fields
from receiver.store.models import Delivery, Message
from receiver.verify.verdict import ALTERED, Verdict
from tests.helpers import DEFAULT_RULE
from tests.threading_support import fresh_store, store_delivery

RAW = b"Message-ID: <r1@x>\r\nSubject: s\r\nFrom: a@x\r\n\r\nbody\r\n"


def request(received_at: dt.datetime) -> DeliveryRequest:
    env = Envelope(
        source="lmtp",
        session_id="s1",
        mail_from="m@x",
        peer="192.0.2.1:25",
        helo="mx.x",
        tls={"cipher": "C", "version": "TLSv1.3", "bits": 256},
        auth_user=None,
        smtp_defects=["bare LF"],
        received_at=received_at,
    )
    verdict = Verdict(ALTERED, ["body changed"], auth_results="rx; dkim=fail")
    return DeliveryRequest(
        mailbox_id=1,
        sha256=hashlib.sha256(RAW).hexdigest(),
        size=len(RAW),
        compressed=compress(RAW),
        record=parse_message(RAW),
        status=QUARANTINED,
        rcpt_to="alice-tok@push.example.com",
        envelope=env,
        verdict=verdict,
    )


def test_every_model_column_is_written_by_the_one_mapping():
    columns = set(Delivery._meta.fields) - {"id"}
    assert set(delivery_fields(request(dt.datetime(2020, 1, 1)), 7)) == columns


def test_received_at_is_the_envelope_time_not_the_commit_time(db_url):
    db = fresh_store(db_url)
    when = dt.datetime(2020, 5, 4, 3, 2, 1)
    with db.connection_context(), db.atomic():
        res = store_delivery(request(when), DEFAULT_RULE)
    with db.connection_context():
        d = Delivery.get_by_id(res.delivery_id)
        assert d.received_at == when
        assert (d.source, d.session_id, d.mail_from, d.peer, d.helo, d.status, d.verdict) == (
            "lmtp",
            "s1",
            "m@x",
            "192.0.2.1:25",
            "mx.x",
            "quarantined",
            "altered",
        )
        assert d.auth_results == "rx; dkim=fail" and d.rcpt_to == "alice-tok@push.example.com"
        assert Message.get_by_id(res.message_id).message_id == "r1@x"
