"""Keep secrets out of everything we print: URL passwords masked, known tokens blanked.

One place decides what a secret looks like, so CLI errors, run records, serve logs and
``describe`` output all mask the same way: ``redis://:***@host:6379/0``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry credentials (redis-py passes unknown ones to the connection).
_SECRET_PARAMS = {"password", "pass", "passwd", "token", "secret", "auth", "access_token", "api_key"}
# A URL inside free text: scheme://, then anything up to whitespace, a quote or a bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# Secrets this process holds that have no recognisable shape (bearer tokens).
_known: set[str] = set()


def mask_url(url: str) -> str:
    """``url`` with its password (userinfo or a ``password=`` query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # not a URL we can take apart: mask everything between :// and @
        return re.sub(r"(://[^/@\s]*?:)[^/@\s]*@", rf"\g<1>{MASK}@", url)
    netloc = parts.netloc
    if password is not None:
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:{MASK}@{host}{f':{port}' if port is not None else ''}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*/")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def remember(secret: str) -> None:
    """Have ``mask_text`` blank ``secret`` wherever it appears (for tokens this process holds)."""
    if secret:
        _known.add(secret)


def mask_text(text: str) -> str:
    """``text`` with every URL's password and every remembered secret masked."""
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    for secret in sorted(_known, key=len, reverse=True):  # longest first: one may contain another
        text = text.replace(secret, MASK)
    return text


class MaskingFilter(logging.Filter):
    """A log filter that masks secrets in the formatted message (install it on handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_logs(*loggers: str) -> None:
    """Install ``MaskingFilter`` on the handlers of the root logger and of ``loggers``."""
    for name in ("", *loggers):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())
