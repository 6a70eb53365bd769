"""Credentials stay secret: the one way gnomon shows a URL, and writes files that hold one.

A production database URL carries a password (``mongodb://alice:s3cret@host/db``). Every
error, log line, table, report and ``--help`` text shows it through :func:`mask_url` or
:func:`mask_secrets` (``mongodb://alice:***@host/db``), and a file that must hold a credential
(a jobflow-remote project, a batch script exporting one) is written by :func:`write_private`:
mode 0600 in a directory that is not left open to others.

This module imports nothing from gnomon, so storage, dft, flows and the CLI can all use it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

#: query parameters whose value is a secret (e.g. ``tlsCertificateKeyFilePassword``)
_SECRET_PARAM = re.compile(r"password|secret|token|apikey|api_key", re.IGNORECASE)

#: ``scheme://user:password@`` anywhere in a text; the password ends at the last ``@`` before
#: whitespace or a quote, so masking errs towards hiding too much, never too little
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*):(?P<pw>[^\s'\"]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;][^=&\s'\"]*(?:password|secret|token|apikey|api_key)[^=&\s'\"]*=)(?P<value>[^&\s'\"]*)",
    re.IGNORECASE,
)


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a password (in its user info or a secret query parameter)."""
    return mask_url(url) != url


def mask_url(url: str) -> str:
    """``url`` as gnomon shows it: the password (and secret query values) replaced by ``***``.

    The user name and host stay, so a person can still tell which database is meant.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: mask whatever looks like one inside it
        return mask_secrets(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*"
            )
    if netloc == parts.netloc and query == parts.query:
        # nothing found where a well-formed URL keeps its password; one with an unescaped '/'
        # in it ("user:pa/ss@host") splits elsewhere, so mask what looks like user info
        return mask_secrets(url)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_secrets(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (error messages, log lines,
    exception texts from libraries that echo the URL they were given)."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)


class MaskSecretsFilter(logging.Filter):
    """A logging filter that masks credentials in every record a handler emits: the net under
    the masking done where messages are made."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` created if missing, mode 0700 (only its owner may list or enter it)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600), its directory 0700.

    The file is created with mode 0600 before anything is written to it, so there is no
    moment in which another user of a shared machine could read the secret.
    """
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


__all__ = [
    "MASK",
    "MaskSecretsFilter",
    "has_credentials",
    "mask_secrets",
    "mask_url",
    "private_dir",
    "write_private",
]
