"""Reading back who signed: ``d=`` and ``s=`` of a signed message's DKIM headers,
recorded with every attempt as evidence."""

from __future__ import annotations

import re

_DKIM_TAGS = re.compile(rb"(?:^|;)\s*([ds])\s*=\s*([^;\s]+)")


def dkim_identity(head: bytes) -> tuple[str | None, str | None]:
    """``d=`` and ``s=`` of the DKIM-Signature headers in ``head`` (comma-joined when a
    message carries several signatures, e.g. RSA and Ed25519)."""
    domains: list[str] = []
    selectors: list[str] = []
    for block in re.split(rb"(?im)^dkim-signature:", head)[1:]:
        unfolded = re.sub(rb"\r\n[ \t]+", b" ", block.split(b"\r\n\r\n")[0])
        line = unfolded.split(b"\r\n")[0]
        for tag, value in _DKIM_TAGS.findall(line):
            target = domains if tag == b"d" else selectors
            text = value.decode("ascii", "replace")
            if text not in target:
                target.append(text)
    return (",".join(domains) or None, ",".join(selectors) or None)
