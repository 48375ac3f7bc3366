"""Daemon logs as one JSON object per line, for log shippers (Loki, Elasticsearch, jq).

Fields: `ts` (RFC 3339, UTC), `level`, `logger`, `msg`, the exception type when there is one,
and the bounded context fields the daemon passes with `extra=` (run_id, plan, phase, status).
Never a header, key or URL with credentials: the daemon logs only names and figures, and as a
last guard anything that looks like a bearer token or an `sk-` key is masked.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

CONTEXT_FIELDS = ("run_id", "plan", "phase", "status", "listen", "path", "reason")
"""`extra=` keys copied into the JSON object."""

_SECRETISH = re.compile(r"(?i)(bearer\s+)\S+|\bsk-[A-Za-z0-9_-]{6,}|(://[^/\s:@]+:)[^@\s/]+@")


def mask(text: str) -> str:
    """`text` with bearer tokens, sk- keys and URL passwords replaced by ***."""

    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1) + "***"
        if m.group(2):
            return m.group(2) + "***@"
        return "sk-***"

    return _SECRETISH.sub(repl, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        for key in CONTEXT_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = mask(str(value)) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal, the same masking and context as JSON."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = mask(super().format(record))
        context = " ".join(
            f"{k}={record.__dict__[k]}"
            for k in CONTEXT_FIELDS
            if record.__dict__.get(k) is not None
        )
        return f"{line} [{context}]" if context else line


def configure(fmt: str, level: str = "info") -> None:
    """Route the root logger to stderr in `fmt` (json | text) at `level`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # apscheduler logs every job start at INFO with the job repr; keep only its warnings.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.WARNING))
