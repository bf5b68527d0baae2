"""Copy checks on the raw bytes → one Verdict (headers, DKIM, ARC, alignment)."""

from __future__ import annotations

import datetime as dt

from receiver.config import Config
from receiver.verify.verdict import UNVERIFIABLE, Verdict


class Verifier:
    """Runs every check on one copy; DNS is async and cached, CPU work off the loop."""

    def __init__(self, config: Config):
        self.config = config

    async def verify(self, raw: bytes, *, subscriber: str, received_at: dt.datetime) -> Verdict:
        return Verdict(UNVERIFIABLE, ["no signature checked"])

    async def close(self) -> None:
        """Release resolver resources."""
