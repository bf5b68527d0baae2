"""The RFC 8601 Authentication-Results value recorded beside (never inside) the bytes."""

from __future__ import annotations

import authres
import authres.arc

from receiver.verify.arccheck import ArcResult
from receiver.verify.dkimcheck import SigResult


def auth_results(authserv_id: str, sigs: list[SigResult], arc: ArcResult) -> str:
    results = [
        authres.DKIMAuthenticationResult(
            result=s.result,
            result_comment=f"{s.key_bits}-bit key" if s.key_bits else None,
            reason=s.reason or None,
            header_d=s.d or None,
            header_i=s.i or None,
            header_s=s.s or None,
            header_a=s.a or None,
        )
        for s in sigs
    ] or [authres.DKIMAuthenticationResult(result="none")]
    if arc.sets:
        results.append(
            authres.arc.ARCAuthenticationResult(
                result=arc.cv,
                result_comment=f"{arc.sets} sets",
                reason=None if arc.cv == "pass" else arc.reason or None,
            )
        )
    return authres.AuthenticationResultsHeader(
        authserv_id=authserv_id, results=results
    ).header_value()
