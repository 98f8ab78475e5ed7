"""Go duration strings and RFC 3339 times, as the contract's JSON writes them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Optional

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_duration(text: str) -> float:
    """parse_duration returns a Go duration string ("15m0s", "100ms") in
    seconds; it raises ValueError for anything else."""
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError("not a Go duration: %r" % text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError("not a Go duration: %r" % text)
    return sign * total


def format_duration(seconds: float) -> str:
    """format_duration writes seconds as a Go duration string ("90s", "1.5s")."""
    if seconds == int(seconds):
        return "%ds" % int(seconds)
    return "%gs" % seconds


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """parse_time reads an RFC 3339 time (nanoseconds allowed) as an aware
    datetime, None for None or ""; it raises ValueError for anything else."""
    if not text:
        return None
    m = _TIME.match(text)
    if not m:
        raise ValueError("not an RFC 3339 time: %r" % text)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(delta if zone[0] == "+" else -delta)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
