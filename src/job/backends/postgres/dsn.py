"""Masking the password of a PostgreSQL DSN in any text (``JobSvcConfig.redact``)."""

from __future__ import annotations

import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

__all__ = ["redact_password"]

# Where a password is written in a DSN: URI userinfo, URI query, key=value.
_URI_PASSWORDS = (
    re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#@]*?:([^/?#@]*)@", re.IGNORECASE),
    re.compile(r"[?&]password=([^&#]*)"),
)
_KV_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)")
_QUOTED = re.compile(r'"([^"]+)"')
_MASK = "***"


def redact_password(dsn: str, text: str) -> str:
    """``text`` with every occurrence of ``dsn``'s password replaced by ``***``.

    The password as parsed by libpq and as written in the DSN (percent-encoded in a URI, quoted
    in a key=value string). If libpq cannot parse the DSN, its error quotes fragments of the
    string that may be pieces of the password, so every quoted fragment of the DSN in ``text``
    is masked too.
    """
    secrets: set[str] = set()
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        text = _QUOTED.sub(lambda m: f'"{_MASK}"' if len(m[1]) > 1 and m[1] in dsn else m[0], text)
    else:
        if password:
            secrets.add(str(password))
    for pattern in _URI_PASSWORDS:
        for match in pattern.finditer(dsn):
            secrets.update((match[1], unquote(match[1])))
    for match in _KV_PASSWORD.finditer(dsn):
        raw = match[1]
        secrets.update((raw, re.sub(r"\\(.)", r"\1", raw.strip("'"))))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text
