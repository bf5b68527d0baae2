"""What the checks found on one copy, typed: the copy path, every DKIM signature, the ARC
chain, alignment, and the wrapper's own evidence.

Consumers (policy's allow-list, metrics, the store) read these fields; `to_json()` is the
form stored in `delivery.verify_detail` and shown by `messages show` and `verify --json`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from receiver.verify.alignment import aligned
from receiver.verify.arccheck import ArcResult
from receiver.verify.copypath import CopyPath
from receiver.verify.dkimcheck import PASS, SigResult


@dataclass
class Evidence:
    path: CopyPath
    from_domain: str | None
    first_receipt: dt.datetime
    dkim: list[SigResult] = field(default_factory=list)
    arc: ArcResult = field(default_factory=ArcResult)
    # A wrapped copy (forward as attachment, journal report): the wrapper's evidence.
    wrapper: Evidence | None = None

    def signing_domains(self) -> set[str]:
        """Domains whose DKIM signature verified, and the ARC sealers of a chain that
        validated: who vouches for this copy (lower case, no trailing dot)."""
        found = {s.d.lower().rstrip(".") for s in self.dkim if s.result == PASS and s.d}
        if self.arc.cv == PASS:
            found.update(d.lower().rstrip(".") for d in self.arc.sealers)
        return found

    def to_json(self) -> dict:
        out = {
            "path": self.path.to_json(),
            "from_domain": self.from_domain,
            "first_receipt": self.first_receipt.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
            + "Z",
            "dkim": [s.to_json() for s in self.dkim],
            "alignment": [
                {
                    "d": s.d,
                    "relaxed": aligned(s.d, self.from_domain),
                    "strict": aligned(s.d, self.from_domain, strict=True),
                }
                for s in self.dkim
            ],
            "arc": self.arc.to_json(),
        }
        if self.wrapper is not None:
            out["wrapper"] = self.wrapper.to_json()
        return out
