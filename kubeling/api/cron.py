"""Cron schedules as kube-controller-manager reads them: the standard parser
of github.com/robfig/cron/v3 (`cron.ParseStandard`) with its error wording,
which the API server's validation repeats to users, and its `Next`, whose
behaviour around daylight-saving changes CronJobs inherit: a time the clock
skips (02:30 on a spring-forward night) does not run that day, and a time the
clock repeats (01:30 on a fall-back night) runs twice.

Times are POSIX seconds. Wall-clock arithmetic follows Go's `time` package
(time.Date resolving a skipped or repeated wall time, AddDate normalising
"month 13" and "day 32"), since that is what decides the edge cases above.
Also here: Go's time.LoadLocation and the controller's local zone (schedules
without a timeZone run in the time zone of the controller's process).
"""

from __future__ import annotations

import calendar
import functools
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from enum import Enum
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: robfig's marker bit: the field was "*" or "?" (day-of-month and day-of-week then AND, else OR)
_STAR = 1 << 63
_MAX_INT64 = 2**63 - 1


class ScheduleError(ValueError):
    """A schedule robfig/cron refuses; the message is its error text."""


# ---------------------------------------------------------------- time zones

def load_location(name: str) -> tzinfo:
    """time.LoadLocation; ValueError with Go's message for a name it refuses."""
    if name in ("", "UTC"):
        return timezone.utc
    if name == "Local":
        return local_zone()
    if ".." in name or name[0] in "/\\":
        raise ValueError("time: invalid location name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name}") from None


@functools.cache
def local_zone() -> tzinfo:
    """Go's time.Local, read once as Go does: $TZ if set ("" is UTC, an
    unknown name falls back to UTC), else /etc/localtime."""
    name = os.environ.get("TZ")
    try:
        if name is None:
            with open("/etc/localtime", "rb") as f:
                return ZoneInfo.from_file(f, key="Local")
        name = name.removeprefix(":")
        if name.startswith("/"):
            with open(name, "rb") as f:
                return ZoneInfo.from_file(f, key=name)
        return load_location(name) if name else timezone.utc
    except (OSError, ValueError):
        return timezone.utc


# ---------------------------------------------------------------- Go wall-clock arithmetic

def _wall(t: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(t, zone)


def _offset(t: int, zone: tzinfo) -> int:
    offset = _wall(t, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _date(year: int, month: int, day: int, hour: int, minute: int, second: int, zone: tzinfo) -> int:
    """time.Date: out-of-range months and days roll over; a wall time a
    zone transition skips or repeats takes the offset Go picks (the one in
    force at the wall time read as UTC, corrected once), not Python's fold."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    wall = calendar.timegm((year, month, 1, hour, minute, second)) + (day - 1) * 86400
    offset = _offset(wall, zone)
    corrected = _offset(wall - offset, zone)
    return wall - (corrected if corrected != offset else offset)


def _add_date(t: int, zone: tzinfo, months: int = 0, days: int = 0) -> int:
    """time.AddDate."""
    w = _wall(t, zone)
    return _date(w.year, w.month + months, w.day + days, w.hour, w.minute, w.second, zone)


def _weekday(w: datetime) -> int:
    """Go's Weekday: Sunday is 0."""
    return w.isoweekday() % 7


# ---------------------------------------------------------------- schedules

class Schedule(Protocol):
    def next(self, after: float) -> int | None:
        """The first activation strictly after `after`; None when there is none
        within five years (Go's zero time)."""


@dataclass(frozen=True)
class SpecSchedule:
    """A cron expression as bit sets of the seconds, minutes... it matches."""

    second: int
    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    zone: tzinfo

    def _day_matches(self, w: datetime) -> bool:
        dom = bool(1 << w.day & self.dom)
        dow = bool(1 << _weekday(w) & self.dow)
        if self.dom & _STAR or self.dow & _STAR:
            return dom and dow
        return dom or dow

    def _never(self) -> bool:
        """A field that matches nothing (robfig accepts "," as an empty list):
        Next would search five years minute by minute to find no time."""
        if (self.dom | self.dow) & _STAR:
            day_never = not self.dom & ~_STAR or not self.dow & ~_STAR
        else:
            day_never = not self.dom and not self.dow
        return day_never or not (self.second and self.minute and self.hour and self.month)

    def next(self, after: float) -> int | None:
        """robfig's SpecSchedule.Next: advance the month, then the day, hour,
        minute and second until each matches, starting over (the `goto WRAP`)
        whenever a field wraps around; whole hours and minutes are added as
        elapsed time, which is what skips or repeats wall times across DST."""
        if self._never():
            return None
        zone = self.zone
        t = math.floor(after) + 1
        added = False
        limit = _wall(t, zone).year + 5
        while _wall(t, zone).year <= limit:
            w = _wall(t, zone)
            wrapped = False
            while not 1 << w.month & self.month:
                if not added:
                    added = True
                    t = _date(w.year, w.month, 1, 0, 0, 0, zone)
                t = _add_date(t, zone, months=1)
                w = _wall(t, zone)
                if w.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(w):
                if not added:
                    added = True
                    t = _date(w.year, w.month, w.day, 0, 0, 0, zone)
                t = _add_date(t, zone, days=1)
                w = _wall(t, zone)
                # Where DST starts at midnight, the day begins at 01:00 (or Go's
                # resolution lands at 23:00): move back onto the day's first hour.
                if w.hour != 0:
                    t += (24 - w.hour) * 3600 if w.hour > 12 else -w.hour * 3600
                    w = _wall(t, zone)
                if w.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            step = self._advance(t, added, zone)
            if step is None:
                return None
            t, added, wrapped = step
            if not wrapped:
                return t
        return None

    def _advance(self, t: int, added: bool, zone: tzinfo) -> tuple[int, bool, bool] | None:
        """The hour, minute and second steps of Next: (time, added, wrapped)."""
        for unit, bits, field in ((3600, self.hour, "hour"), (60, self.minute, "minute"), (1, self.second, "second")):
            while not 1 << getattr(_wall(t, zone), field) & bits:
                if not added:
                    added = True
                    if unit == 3600:
                        w = _wall(t, zone)
                        t = _date(w.year, w.month, w.day, w.hour, 0, 0, zone)
                    else:
                        t -= t % unit  # time.Truncate: on the absolute clock
                t += unit
                if getattr(_wall(t, zone), field) == 0:
                    return t, added, True
        return t, added, False


@dataclass(frozen=True)
class ConstantDelaySchedule:
    """`@every <duration>`: whole seconds, at least one."""

    delay: int

    def next(self, after: float) -> int | None:
        return math.floor(after) + self.delay


# ---------------------------------------------------------------- parsing

@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MINUTES = _Bounds(0, 59)
_HOURS = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTHS = _Bounds(1, 12, {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))})
_DOW = _Bounds(0, 6, {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))})


def _bits(low: int, high: int, step: int) -> int:
    return sum(1 << i for i in range(low, high + 1, step))


def _all(b: _Bounds) -> int:
    return _bits(b.low, b.high, 1) | _STAR


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atoi(expr: str) -> int:
    """mustParseInt: strconv.Atoi, then no negatives."""
    if not re.fullmatch(r"[+-]?[0-9]+", expr):
        raise ScheduleError(f"failed to parse int from {expr}: strconv.Atoi: parsing {_go_quote(expr)}: "
                            "invalid syntax")
    num = int(expr)
    if not -_MAX_INT64 - 1 <= num <= _MAX_INT64:
        raise ScheduleError(f"failed to parse int from {expr}: strconv.Atoi: parsing {_go_quote(expr)}: "
                            "value out of range")
    if num < 0:
        raise ScheduleError(f"negative number ({num}) not allowed: {expr}")
    return num


def _int_or_name(expr: str, names: dict[str, int] | None) -> int:
    if names is not None and expr.lower() in names:
        return names[expr.lower()]
    return _atoi(expr)


def _range(expr: str, b: _Bounds) -> int:
    """getRange: `*`, `?`, `n`, `n-m`, each optionally `/step`."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = b.low, b.high, _STAR
    else:
        start = _int_or_name(low_and_high[0], b.names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], b.names)
        else:
            raise ScheduleError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_and_high) == 1:
            end = b.high  # "n/step" means "n-max/step"
        if step > 1:
            extra = 0
    else:
        raise ScheduleError(f"too many slashes: {expr}")
    if start < b.low:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise ScheduleError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _field(text: str, b: _Bounds) -> int:
    """getField: a comma-separated list of ranges (empty items are skipped, as strings.FieldsFunc does)."""
    bits = 0
    for expr in (e for e in text.split(",") if e):
        bits |= _range(expr, b)
    return bits


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*)(\.[0-9]*)?([^0-9.]*)")


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, in seconds; ValueError with Go's message."""
    invalid = ValueError(f"time: invalid duration {_go_quote(text)}")
    s = text[1:] if text[:1] in ("+", "-") else text
    sign = -1.0 if text[:1] == "-" else 1.0
    if s == "0":
        return 0.0
    if not s:
        raise invalid
    total = 0.0
    while s:
        m = _DURATION_PART.match(s)
        assert m is not None  # every group may be empty
        whole, fraction, unit = m.groups()
        if not whole and len(fraction or "") <= 1:
            raise invalid
        if not unit:
            raise ValueError(f"time: missing unit in duration {_go_quote(text)}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(text)}")
        total += float((whole or "0") + (fraction or "")) * _DURATION_UNITS[unit]
        s = s[m.end():]
    if total > _MAX_INT64 / 1e9:
        raise invalid
    return sign * total


def _descriptor(spec: str, zone: tzinfo) -> Schedule:
    """parseDescriptor."""
    if spec in ("@yearly", "@annually"):
        return SpecSchedule(1, 1, 1, 1 << 1, 1 << 1, _all(_DOW), zone)
    if spec == "@monthly":
        return SpecSchedule(1, 1, 1, 1 << 1, _all(_MONTHS), _all(_DOW), zone)
    if spec == "@weekly":
        return SpecSchedule(1, 1, 1, _all(_DOM), _all(_MONTHS), 1, zone)
    if spec in ("@daily", "@midnight"):
        return SpecSchedule(1, 1, 1, _all(_DOM), _all(_MONTHS), _all(_DOW), zone)
    if spec == "@hourly":
        return SpecSchedule(1, 1, _all(_HOURS), _all(_DOM), _all(_MONTHS), _all(_DOW), zone)
    if spec.startswith("@every "):
        try:
            seconds = parse_go_duration(spec[len("@every "):])
        except ValueError as e:
            raise ScheduleError(f"failed to parse duration {spec}: {e}") from None
        return ConstantDelaySchedule(max(1, math.floor(seconds)))
    raise ScheduleError(f"unrecognized descriptor: {spec}")


def parse_standard(spec: str, local: tzinfo | None = None) -> Schedule:
    """cron.ParseStandard: five fields (minute hour day-of-month month
    day-of-week) or a descriptor, optionally after `TZ=<zone> ` or
    `CRON_TZ=<zone> `. Without a zone the schedule runs in `local`
    (default: the process's local zone). ScheduleError says what is wrong."""
    if not spec:
        raise ScheduleError("empty spec string")
    zone = local if local is not None else local_zone()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        name, _, rest = spec[spec.index("=") + 1:].partition(" ")
        try:
            zone = load_location(name)
        except ValueError as e:
            raise ScheduleError(f"provided bad location {name}: {e}") from None
        spec = rest.strip()
    if spec.startswith("@"):
        return _descriptor(spec, zone)
    fields = spec.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    minute, hour, dom, month, dow = fields
    return SpecSchedule(1, _field(minute, _MINUTES), _field(hour, _HOURS), _field(dom, _DOM),
                        _field(month, _MONTHS), _field(dow, _DOW), zone)


# ---------------------------------------------------------------- missed schedules

class Missed(Enum):
    NONE = "none"
    FEW = "few"
    MANY = "many"


#: more missed start times than this and the controller warns (TooManyMissedTimes)
MANY_MISSED = 100


def most_recent_schedule_time(schedule: Schedule, earliest: float, now: float) -> tuple[int | None, Missed]:
    """mostRecentScheduleTime (utils.go), once the caller picked `earliest`
    (the last schedule time or the creation time, moved up to the starting
    deadline): the latest activation in (earliest, now], or None, and how many
    were missed on the way, estimated from the gap between two activations
    rather than by walking them all. ScheduleError for a schedule that never
    fires twice (e.g. February 31st)."""
    t1 = schedule.next(earliest)
    if t1 is not None and now < t1:
        return None, Missed.NONE
    t2 = schedule.next(t1) if t1 is not None else None
    if t1 is not None and t2 is not None and now < t2:
        return t1, Missed.NONE
    gap = round(t2 - t1) if t1 is not None and t2 is not None else 0
    if gap < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    assert t1 is not None
    missed = int(now - t1) // gap + 1
    # Start two gaps short of the estimate and let the schedule find the exact
    # times: schedules are not evenly spaced ("30 6-16/4 * * 1-5").
    most_recent: int | None = None
    t = schedule.next(t1 + (missed - 2) * gap)
    while t is not None and t <= now:
        most_recent = t
        t = schedule.next(t)
    return most_recent, Missed.MANY if missed > MANY_MISSED else Missed.FEW
