"""The one validity function (S5, S12): a mapping of fields in, a typed event out.

Every entry point uses ``validate``: JSON lines (``schemas.jsonl``), Avro records
from Kafka (``schemas.codec``) and the check API. A fault raises ``InvalidEvent``
with a stable reason code (S12) and the field it concerns.

Which code a fault gets:

- ``unknown_type``: the ``type`` tag names no event type.
- ``missing_field``: a required field is left out (a storage event with neither
  ``delta_bytes`` nor ``total_bytes`` counts as this too).
- ``wrong_type``: a field has the wrong JSON type, including ``null`` for a
  non-nullable field, a float or a bool where an integer belongs, ``"yes"`` for a bool.
- ``invalid_value``: the type is right but the value is outside the contract: a
  negative count, an unknown enum value, a naive or malformed time, a date-only
  ``cycle_anchor``, an unknown IANA timezone, a plan limit <= 0 or for an unknown
  quota, a top-up for ``api_requests_per_minute`` or an unknown quota, a mute of an
  unknown quota or threshold, a ``webhook_secret`` that is not ``whsec_`` + base64,
  both storage readings at once, an empty name, a provider containing ``/``.
- ``empty_id``: ``event_id``, ``workspace_id``, ``member_id``, ``machine_id`` or
  ``schedule_id`` is the empty string.
- ``time_out_of_range``: ``occurred_at`` before 2000-01-01T00:00:00Z, from year 9999
  on, or (when ``now_ms`` is given) more than five minutes after now.
- ``undecodable``: raised by the decoders (bad JSON, bad Avro, wrong magic byte,
  unknown schema id), never by ``validate`` itself.
- ``cycle_closed``: the core's verdict (S4), listed here so that the codes live in one place.

The checks are straight-line code per type, one small checker per field (``_nonempty``,
``_count``, ``_enum``, ...): the common case costs a call, one ``dict.get`` and one type
test per field; diagnosing a fault happens only on the slow path.
"""

from __future__ import annotations

import base64
import binascii
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, Final, NoReturn

from schemas.events import (
    API_PROTOCOLS,
    FORECAST_QUOTAS,
    MACHINE_ACTIONS,
    MAX_FORECAST_LEAD_DAYS,
    QUOTAS,
    STORAGE_CATEGORIES,
    SURFACES,
    THRESHOLDS,
    AlertSettingsEvent,
    ApiEvent,
    CommandEvent,
    Event,
    ForecastOptIn,
    Limits,
    MachineEvent,
    Mute,
    PlanEvent,
    ScheduleRunEvent,
    SkillEvent,
    StorageEvent,
    TokensEvent,
    TopupEvent,
)
from schemas.quotas import TOPUP_NAMES

REASONS: Final = (
    "undecodable",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "empty_id",
    "time_out_of_range",
    "cycle_closed",
)

MIN_OCCURRED_AT_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z (S5)
MAX_OCCURRED_AT_MS: Final = 253_370_764_800_000  # 9999-01-01T00:00:00Z, exclusive
# 0001-01-02T00:00:00Z: the earliest cycle anchor. A day after datetime.min, so the anchor's
# wall-clock time exists in every timezone (local mean time west of UTC would be year 0).
MIN_INSTANT_MS: Final = -62_135_510_400_000
FUTURE_SKEW_MS: Final = 300_000  # "more than 5 minutes after now" (S5)
MAX_LONG: Final = 2**63 - 1  # Avro long
TOPUP_QUOTAS: Final = TOPUP_NAMES  # S8: the per-minute rate has none

_SURFACES: Final = frozenset(SURFACES)
_CATEGORIES: Final = frozenset(STORAGE_CATEGORIES)
_PROTOCOLS: Final = frozenset(API_PROTOCOLS)
_ACTIONS: Final = frozenset(MACHINE_ACTIONS)
_QUOTAS: Final = frozenset(QUOTAS)
_TOPUP_QUOTAS: Final = frozenset(TOPUP_QUOTAS)
_THRESHOLDS: Final = frozenset(THRESHOLDS)
_FORECAST_QUOTAS: Final = frozenset(FORECAST_QUOTAS)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))"
)
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class InvalidEvent(Exception):
    """An input that is not an event: ``reason`` is an S12 code, ``detail`` names the field."""

    def __init__(
        self, reason: str, detail: str, field: str | None = None, *, line: int | None = None
    ) -> None:
        super().__init__(reason, detail, field)
        self.reason = reason
        self.detail = detail
        self.field = field
        self.line = line

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.reason}: {self.detail}"


# --- slow path: say exactly what is wrong ---------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _missing_or_wrong(f: Mapping[str, Any], name: str, expected: str) -> NoReturn:
    if name not in f:
        raise InvalidEvent("missing_field", f"{name}: required field is missing", name)
    raise InvalidEvent(
        "wrong_type", f"{name}: expected {expected}, got {_json_type(f[name])}", name
    )


def _invalid(name: str, message: str) -> NoReturn:
    raise InvalidEvent("invalid_value", f"{name}: {message}", name)


def _bad_id(f: Mapping[str, Any], name: str) -> NoReturn:
    if f.get(name) == "":
        raise InvalidEvent("empty_id", f"{name}: must not be empty", name)
    _missing_or_wrong(f, name, "a non-empty string")


def _bad_name(f: Mapping[str, Any], name: str) -> NoReturn:
    if f.get(name) == "":
        _invalid(name, "must not be empty")
    _missing_or_wrong(f, name, "a non-empty string")


def _bad_count(f: Mapping[str, Any], name: str) -> NoReturn:
    value = f.get(name)
    if type(value) is int:
        _invalid(name, f"must be >= 0, got {value}" if value < 0
                 else f"{value} does not fit a 64-bit integer")
    _missing_or_wrong(f, name, "an integer >= 0")


def _bad_enum(f: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> NoReturn:
    value = f.get(name)
    if type(value) is str:
        _invalid(name, f"unknown value {value!r}, expected one of {', '.join(allowed)}")
    _missing_or_wrong(f, name, "a string, one of " + ", ".join(allowed))


def _bad_bool(f: Mapping[str, Any], name: str) -> NoReturn:
    _missing_or_wrong(f, name, "true or false")


# --- fast path: one field each, its value when valid -------------------------------------------


BadField = Callable[[Mapping[str, Any], str], NoReturn]


def _nonempty(f: Mapping[str, Any], name: str, bad: BadField) -> str:
    """A non-empty string; else ``bad`` says what is wrong (``_bad_id``: an empty id is
    ``empty_id``, ``_bad_name``: an empty name is ``invalid_value``)."""
    value = f.get(name)
    if type(value) is not str or not value:
        bad(f, name)
    return value


def _optional_nonempty(f: Mapping[str, Any], name: str, bad: BadField) -> str | None:
    """Left out, null or a non-empty string (see ``_nonempty``)."""
    value = f.get(name)
    if value is not None and (type(value) is not str or not value):
        bad(f, name)
    return value


def _count(f: Mapping[str, Any], name: str, absent: int | None = None) -> int:
    """A count from 0 to ``MAX_LONG``; ``absent`` is the count of a field left out or null
    (``None``: the field is required)."""
    value = f.get(name)
    if value is None and absent is not None:
        return absent
    if type(value) is not int or not 0 <= value <= MAX_LONG:
        _bad_count(f, name)
    return value


def _enum(f: Mapping[str, Any], name: str, allowed: frozenset[str],
          listed: tuple[str, ...]) -> str:
    value = f.get(name)
    if type(value) is not str or value not in allowed:
        _bad_enum(f, name, listed)
    return value


# --- times ------------------------------------------------------------------------------------

_day_ms_cache: dict[str, int] = {}


def _day_ms(ymd: str, name: str) -> int:
    """Epoch ms of a ``YYYY-MM-DD`` date at 00:00 UTC (cached: events share few dates)."""
    try:
        day = date(int(ymd[0:4]), int(ymd[5:7]), int(ymd[8:10]))
    except ValueError:
        _invalid(name, f"{ymd!r} is not a calendar date")
    ms = (day.toordinal() - _EPOCH_ORDINAL) * 86_400_000
    if len(_day_ms_cache) > 50_000:
        _day_ms_cache.clear()
    _day_ms_cache[ymd] = ms
    return ms


_hour_ms_cache: dict[str, int] = {}  # "YYYY-MM-DDTHH" (seen valid) -> epoch ms
_SEXAGESIMAL: Final = {f"{i:02d}": i for i in range(60)}
_MILLIS: Final = {f"{i:03d}": i for i in range(1000)}


def parse_rfc3339_ms(value: str, name: str = "occurred_at") -> int:
    """Epoch ms of an RFC 3339 time with an offset; digits past milliseconds are truncated.

    A naive time, a date alone, or any other shape raises ``invalid_value`` naming ``name``.
    Fast path: ``...:MM:SSZ`` and ``...:MM:SS.fffZ`` within an hour seen before.
    """
    base = _hour_ms_cache.get(value[:13])
    if base is not None and value[13:14] == ":" and value[16:17] == ":":
        minute = _SEXAGESIMAL.get(value[14:16])
        second = _SEXAGESIMAL.get(value[17:19])
        if minute is not None and second is not None:
            tail = value[19:]
            if tail == "Z":
                return base + minute * 60_000 + second * 1000
            if len(tail) == 5 and tail[0] == "." and tail[4] == "Z":
                millis = _MILLIS.get(tail[1:4])
                if millis is not None:
                    return base + minute * 60_000 + second * 1000 + millis
    return _parse_rfc3339_slow(value, name)


def _parse_rfc3339_slow(value: str, name: str) -> int:
    m = _RFC3339.fullmatch(value)
    if m is None:
        _invalid(name, f"{value!r} is not an RFC 3339 time with an offset "
                       "(e.g. 2025-05-05T05:05:05Z or 2025-05-05T07:05:05+02:00)")
    _y, _mo, _d, hh, mi, ss, frac, sign, oh, om = m.groups()
    ymd = value[:10]
    day = _day_ms_cache.get(ymd)
    if day is None:
        day = _day_ms(ymd, name)
    h, mnt, s = int(hh), int(mi), int(ss)
    if h > 23 or mnt > 59 or s > 59:
        _invalid(name, f"{value!r} has no such time of day")
    if len(_hour_ms_cache) > 100_000:
        _hour_ms_cache.clear()
    _hour_ms_cache[value[:13]] = day + h * 3_600_000
    ms = day + h * 3_600_000 + mnt * 60_000 + s * 1000
    if frac:
        ms += int(frac[:3]) * (1, 100, 10, 1)[min(len(frac), 3)]
    if sign:
        off_h, off_m = int(oh), int(om)
        if off_h > 23 or off_m > 59:
            _invalid(name, f"{value!r} has no such offset")
        offset = (off_h * 60 + off_m) * 60_000
        ms = ms - offset if sign == "+" else ms + offset
    return ms


def _bad_time(f: Mapping[str, Any], name: str) -> NoReturn:
    _missing_or_wrong(f, name, "an RFC 3339 string or integer epoch milliseconds")


def _envelope(f: Mapping[str, Any], now_ms: int | None) -> tuple[str, str, int]:
    event_id = _nonempty(f, "event_id", _bad_id)
    workspace_id = _nonempty(f, "workspace_id", _bad_id)
    at = f.get("occurred_at")
    if type(at) is int:
        ms = at
    elif type(at) is str:
        ms = parse_rfc3339_ms(at)
    else:
        _bad_time(f, "occurred_at")
    if not MIN_OCCURRED_AT_MS <= ms < MAX_OCCURRED_AT_MS or (
        now_ms is not None and ms > now_ms + FUTURE_SKEW_MS
    ):
        after = "" if now_ms is None else " and at most 5 minutes after now"
        raise InvalidEvent(
            "time_out_of_range",
            f"occurred_at: {at!r} must be from 2000-01-01T00:00:00Z{after}",
            "occurred_at",
        )
    return event_id, workspace_id, ms


# --- one straight-line function per type --------------------------------------------------------


def _tokens(f: Mapping[str, Any], now_ms: int | None) -> TokensEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    member_id = _nonempty(f, "member_id", _bad_id)
    machine_id = _optional_nonempty(f, "machine_id", _bad_id)
    skill = _optional_nonempty(f, "skill", _bad_name)
    provider = _nonempty(f, "provider", _bad_name)
    if "/" in provider:
        _invalid("provider", f"{provider!r} must not contain '/' (model keys are provider/model)")
    model = _nonempty(f, "model", _bad_name)
    input_tokens = _count(f, "input_tokens")
    output_tokens = _count(f, "output_tokens")
    surface = _enum(f, "surface", _SURFACES, SURFACES)
    # optional (usage.tokens v2): absent or null is 0; both are part of input_tokens
    cache_read = _count(f, "cache_read_tokens", absent=0)
    cache_write = _count(f, "cache_write_tokens", absent=0)
    if cache_read + cache_write > input_tokens:
        _invalid("cache_read_tokens", f"cache_read_tokens + cache_write_tokens "
                 f"({cache_read} + {cache_write}) exceed input_tokens ({input_tokens}): "
                 "cache tokens are part of the input tokens")
    return TokensEvent(event_id, workspace_id, occurred_at, member_id, machine_id, skill,
                       provider, model, input_tokens, output_tokens, surface, cache_read,
                       cache_write)


def _command(f: Mapping[str, Any], now_ms: int | None) -> CommandEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    member_id = _nonempty(f, "member_id", _bad_id)
    machine_id = _nonempty(f, "machine_id", _bad_id)
    command = _nonempty(f, "command", _bad_name)
    return CommandEvent(event_id, workspace_id, occurred_at, member_id, machine_id, command)


def _schedule_run(f: Mapping[str, Any], now_ms: int | None) -> ScheduleRunEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    member_id = _nonempty(f, "member_id", _bad_id)
    schedule_id = _nonempty(f, "schedule_id", _bad_id)
    machine_id = _optional_nonempty(f, "machine_id", _bad_id)
    return ScheduleRunEvent(event_id, workspace_id, occurred_at, member_id, schedule_id,
                            machine_id)


def _skill(f: Mapping[str, Any], now_ms: int | None) -> SkillEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    member_id = _nonempty(f, "member_id", _bad_id)
    skill = _nonempty(f, "skill", _bad_name)
    machine_id = _optional_nonempty(f, "machine_id", _bad_id)
    cache_hit = f.get("cache_hit")
    if type(cache_hit) is not bool:
        _bad_bool(f, "cache_hit")
    return SkillEvent(event_id, workspace_id, occurred_at, member_id, skill, machine_id,
                      cache_hit)


def _storage(f: Mapping[str, Any], now_ms: int | None) -> StorageEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    category = _enum(f, "category", _CATEGORIES, STORAGE_CATEGORIES)
    delta_bytes = f.get("delta_bytes")
    total_bytes = f.get("total_bytes")
    if delta_bytes is not None:
        if type(delta_bytes) is not int or not -MAX_LONG <= delta_bytes <= MAX_LONG:
            if type(delta_bytes) is int:
                _invalid("delta_bytes", f"{delta_bytes} does not fit a 64-bit integer")
            _missing_or_wrong(f, "delta_bytes", "an integer")
        if total_bytes is not None:
            _invalid("total_bytes", "a storage event carries exactly one of delta_bytes and "
                                    "total_bytes, not both")
    elif total_bytes is not None:
        if type(total_bytes) is not int or not 0 <= total_bytes <= MAX_LONG:
            _bad_count(f, "total_bytes")
    else:
        raise InvalidEvent(
            "missing_field",
            "delta_bytes: a storage event needs exactly one of delta_bytes and total_bytes",
            "delta_bytes",
        )
    return StorageEvent(event_id, workspace_id, occurred_at, category, delta_bytes, total_bytes)


def _api(f: Mapping[str, Any], now_ms: int | None) -> ApiEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    member_id = _optional_nonempty(f, "member_id", _bad_id)
    protocol = _enum(f, "protocol", _PROTOCOLS, API_PROTOCOLS)
    requests = _count(f, "requests") if "requests" in f else 1  # null is wrong_type
    return ApiEvent(event_id, workspace_id, occurred_at, member_id, protocol, requests)


def _machine(f: Mapping[str, Any], now_ms: int | None) -> MachineEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    machine_id = _nonempty(f, "machine_id", _bad_id)
    action = _enum(f, "action", _ACTIONS, MACHINE_ACTIONS)
    return MachineEvent(event_id, workspace_id, occurred_at, machine_id, action)


_zone_ok: set[str] = set()
_known_zones: frozenset[str] | None = None


def _check_timezone(value: str) -> None:
    """An IANA key that zoneinfo loads (results cached; ``localtime`` and paths refused)."""
    global _known_zones
    if value in _zone_ok:
        return
    if _known_zones is None:
        _known_zones = frozenset(zoneinfo.available_timezones())
    try:
        if value not in _known_zones:
            raise zoneinfo.ZoneInfoNotFoundError(value)
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        _invalid("timezone", f"unknown IANA timezone {value!r} (e.g. UTC, Europe/Berlin)")
    _zone_ok.add(value)


def _instant(f: Mapping[str, Any], name: str) -> int:
    """An instant from 0001-01-02 to 9998 (UTC), given as RFC 3339 or int epoch ms; the same
    range either way (a string with an offset can name an instant in year 0)."""
    value = f.get(name)
    if type(value) is str:
        ms = parse_rfc3339_ms(value, name)
    elif type(value) is int:
        ms = value
    else:
        _bad_time(f, name)
    if not MIN_INSTANT_MS <= ms < MAX_OCCURRED_AT_MS:
        _invalid(name, f"{value!r} is outside 0001-01-02T00:00:00Z to 9998-12-31 (UTC)")
    return ms


def _limits(value: object) -> Limits:
    if not isinstance(value, Mapping):
        raise InvalidEvent(
            "wrong_type", f"limits: expected an object, got {_json_type(value)}", "limits"
        )
    for key, limit in value.items():
        if key not in _QUOTAS:
            _invalid("limits", f"unknown quota {key!r}, expected some of {', '.join(QUOTAS)}")
        if limit is None:
            continue
        if type(limit) is not int:
            raise InvalidEvent(
                "wrong_type",
                f"limits.{key}: expected a positive integer or null, got {_json_type(limit)}",
                "limits",
            )
        if not 0 < limit <= MAX_LONG:
            _invalid("limits", f"limits.{key}: {limit} must be a positive integer or null")
    get = value.get
    return Limits(get("machines"), get("ai_tokens"), get("storage_bytes"),
                  get("schedule_runs"), get("api_requests_per_minute"),
                  get("api_requests_per_cycle"))


def _owners(f: Mapping[str, Any]) -> tuple[str, ...]:
    owners = f.get("owners")
    if not isinstance(owners, list | tuple):
        _missing_or_wrong(f, "owners", "a list of email addresses")
    for owner in owners:
        if type(owner) is not str:
            raise InvalidEvent(
                "wrong_type", f"owners: expected email strings, got {_json_type(owner)}", "owners"
            )
        if _EMAIL.fullmatch(owner) is None:
            _invalid("owners", f"{owner!r} is not an email address")
    return tuple(owners)


def _plan(f: Mapping[str, Any], now_ms: int | None) -> PlanEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    plan = _nonempty(f, "plan", _bad_name)
    cycle_anchor = _instant(f, "cycle_anchor")
    timezone = f.get("timezone")
    if timezone is None or timezone == "":
        timezone = "UTC"
    elif type(timezone) is not str:
        _missing_or_wrong(f, "timezone", "an IANA timezone name")
    else:
        _check_timezone(timezone)
    if "limits" not in f:
        _missing_or_wrong(f, "limits", "an object")
    limits = _limits(f["limits"])
    owners = _owners(f)
    return PlanEvent(event_id, workspace_id, occurred_at, plan, cycle_anchor, timezone, limits,
                     owners)


def _topup(f: Mapping[str, Any], now_ms: int | None) -> TopupEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    quota = f.get("quota")
    if type(quota) is not str or quota not in _TOPUP_QUOTAS:
        if quota == "api_requests_per_minute":
            _invalid("quota", "api_requests_per_minute cannot be topped up (S5)")
        _bad_enum(f, "quota", TOPUP_QUOTAS)
    amount = _count(f, "amount")
    return TopupEvent(event_id, workspace_id, occurred_at, quota, amount)


def is_webhook_secret(value: str) -> bool:
    """One Standard Webhooks secret (``whsec_`` + non-empty standard base64), or two
    separated by one space while a rotation is under way (both sign every webhook)."""
    parts = value.split(" ")
    return 1 <= len(parts) <= 2 and all(_is_one_webhook_secret(p) for p in parts)


def _is_one_webhook_secret(value: str) -> bool:
    if not value.startswith("whsec_") or len(value) == 6:
        return False
    try:
        base64.b64decode(value[6:], validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _optional_str(f: Mapping[str, Any], name: str) -> str | None:
    value = f.get(name)
    if value is not None and type(value) is not str:
        _missing_or_wrong(f, name, "a string or null")
    return value


def _mutes(value: object) -> tuple[Mute, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidEvent(
            "wrong_type", f"muted: expected a list of {{quota, threshold}}, got "
                          f"{_json_type(value)}", "muted")
    mutes = []
    for item in value:
        if not isinstance(item, Mapping):
            raise InvalidEvent(
                "wrong_type", f"muted: expected {{quota, threshold}} objects, got "
                              f"{_json_type(item)}", "muted")
        quota = item.get("quota")
        threshold = item.get("threshold")
        if type(quota) is not str:
            kind = "missing_field" if "quota" not in item else "wrong_type"
            raise InvalidEvent(kind, "muted: every mute needs a quota string", "muted")
        if quota not in _QUOTAS:
            _invalid("muted", f"unknown quota {quota!r}, expected one of {', '.join(QUOTAS)}")
        if threshold is not None:
            if type(threshold) is not int:
                raise InvalidEvent("wrong_type", "muted: threshold must be 80, 95, 100 or null",
                                   "muted")
            if threshold not in _THRESHOLDS:
                _invalid("muted", f"threshold {threshold} is not one of 80, 95, 100 or null")
        mutes.append(Mute(quota, threshold))
    return tuple(mutes)


def _alert_settings(f: Mapping[str, Any], now_ms: int | None) -> AlertSettingsEvent:
    event_id, workspace_id, occurred_at = _envelope(f, now_ms)
    email = f.get("email")
    if email is not None and type(email) is not bool:
        _bad_bool(f, "email")
    slack_webhook_url = _optional_str(f, "slack_webhook_url")
    webhook_url = _optional_str(f, "webhook_url")
    webhook_secret = _optional_str(f, "webhook_secret")
    if webhook_secret is not None and not is_webhook_secret(webhook_secret):
        _invalid("webhook_secret", "not a Standard Webhooks secret ('whsec_' followed by "
                                   "base64; the value is not shown)")
    muted = _mutes(f.get("muted"))
    return AlertSettingsEvent(event_id, workspace_id, occurred_at, email, slack_webhook_url,
                              webhook_url, webhook_secret, muted, _forecasts(f.get("forecasts")),
                              _muted_forecasts(f.get("muted_forecasts")))


def _forecast_quota(where: str, quota: object, present: bool) -> str:
    if type(quota) is not str:
        raise InvalidEvent("wrong_type" if present else "missing_field",
                           f"{where}: every entry needs a quota string", where)
    if quota not in _FORECAST_QUOTAS:
        _invalid(where, f"{quota!r} has no forecast, expected one of "
                        f"{', '.join(FORECAST_QUOTAS)}")
    return quota


def _forecasts(value: object) -> tuple[ForecastOptIn, ...]:
    """The forecast opt-ins: counter quotas only, each once, lead 0-365 days or null."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidEvent("wrong_type", f"forecasts: expected a list of {{quota, lead_days}}, "
                                         f"got {_json_type(value)}", "forecasts")
    opt_ins: list[ForecastOptIn] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise InvalidEvent("wrong_type", f"forecasts: expected {{quota, lead_days}} "
                                             f"objects, got {_json_type(item)}", "forecasts")
        quota = _forecast_quota("forecasts", item.get("quota"), "quota" in item)
        if any(o.quota == quota for o in opt_ins):
            _invalid("forecasts", f"{quota} is listed twice")
        lead = item.get("lead_days")
        if lead is not None:
            if type(lead) is not int:
                raise InvalidEvent("wrong_type", "forecasts: lead_days must be an integer or "
                                                 "null", "forecasts")
            if not 0 <= lead <= MAX_FORECAST_LEAD_DAYS:
                _invalid("forecasts", f"lead_days {lead} is not between 0 and "
                                      f"{MAX_FORECAST_LEAD_DAYS}")
        opt_ins.append(ForecastOptIn(quota, lead))
    return tuple(opt_ins)


def _muted_forecasts(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidEvent("wrong_type", f"muted_forecasts: expected a list of quotas, got "
                                         f"{_json_type(value)}", "muted_forecasts")
    return tuple(dict.fromkeys(_forecast_quota("muted_forecasts", q, True) for q in value))


_VALIDATORS: Final[dict[str, Callable[[Mapping[str, Any], int | None], Event]]] = {
    "tokens": _tokens,
    "command": _command,
    "schedule_run": _schedule_run,
    "skill": _skill,
    "storage": _storage,
    "api": _api,
    "machine": _machine,
    "plan": _plan,
    "topup": _topup,
    "alert_settings": _alert_settings,
}


def validate(type_name: str, fields: Mapping[str, Any], *, now_ms: int | None = None) -> Event:
    """The event of type ``type_name`` made of ``fields``, or ``InvalidEvent`` saying why not.

    ``occurred_at`` (and a plan's ``cycle_anchor``) may be an RFC 3339 string or int epoch
    ms. ``now_ms=None`` makes the "more than 5 minutes after now" test inert. Unknown
    fields are ignored.
    """
    check = _VALIDATORS.get(type_name) if type(type_name) is str else None
    if check is None:
        raise InvalidEvent(
            "unknown_type",
            f"type: unknown event type {type_name!r}, expected one of {', '.join(_VALIDATORS)}",
            "type",
        )
    return check(fields, now_ms)
