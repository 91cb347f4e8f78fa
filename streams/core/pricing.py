"""What a tokens event costs: the ``genai-prices`` bundled snapshot, in integer micro-dollars.

``PRICER.cost(provider, model, occurred_at, input, output, cache_read, cache_write)``
answers the event's price in micro-dollars (``int``), or ``None`` when the table does
not know the provider or the model (the event is then *unpriced*: its tokens are
counted as such, never guessed).

Exactness: the price is what ``genai_prices.calc_price`` answers for the same usage at
``occurred_at`` (the package's dated prices: a ``start_date`` constraint switches at
UTC midnight), a ``Decimal`` in dollars, rounded once per event to the micro-dollar
(half to even). Everything downstream adds integers, so the stream, the replay,
ClickHouse and the CSV agree to the micro-dollar.

Speed: ``calc_price`` takes ~70 us. Without tiers, a price is linear in the four token
counts, so each (model price, tier) is resolved once into four integer rates in
pico-dollars per token (derived from ``ModelPrice.calc_price`` itself, so the
package's rules for which tokens a cache price covers hold); tiered prices (e.g. a
higher rate above 200k input tokens) resolve per tier. A rate that is not a whole
number of pico-dollars falls back to the package for every such event (slow, exact).

Token convention (as ``genai_prices.Usage``): ``input_tokens`` includes the cache-read
and cache-write tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from genai_prices import Usage, data_snapshot
from genai_prices import __version__ as _package_version
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    StartDateConstraint,
    TieredPrices,
)

PRICES_VERSION: Final = f"genai-prices {_package_version}"
DAY_MS: Final = 86_400_000
_MINUTE_MS: Final = 60_000
_PICO_PER_MICRO: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = Decimal(1)
_UNPRICED: Final = object()  # the table does not know the model
_GENERAL: Final = object()  # tiers or time-of-day prices: the general path

def micro_dollars(dollars: Decimal) -> int:
    """Dollars as integer micro-dollars, half to even (the one rounding of an event)."""
    return int((dollars * 1_000_000).quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def dollars(micros: int) -> str:
    """Micro-dollars as an exact dollar text: ``1234567`` -> ``$1.234567``."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}${whole:,}.{frac:06d}"


def _round_pico(pico: int) -> int:
    """Pico-dollars to micro-dollars, half to even, in integers."""
    q, r = divmod(pico, _PICO_PER_MICRO)
    twice = 2 * r
    if twice > _PICO_PER_MICRO or (twice == _PICO_PER_MICRO and q & 1):
        q += 1
    return q


def _at(t_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=t_ms)


def _usage(inp: int, out: int, cache_read: int, cache_write: int) -> Usage:
    kwargs: dict[str, Any] = {"input_tokens": inp, "output_tokens": out}
    if cache_read:
        kwargs["cache_read_tokens"] = cache_read
    if cache_write:
        kwargs["cache_write_tokens"] = cache_write
    return Usage(**kwargs)


def _tier_starts(price: ModelPrice) -> tuple[int, ...]:
    starts: set[int] = set()
    for value in price.__dict__.values():
        if isinstance(value, TieredPrices):
            starts.update(tier.start for tier in value.tiers)
    return tuple(sorted(starts))


def _rates_of(price: ModelPrice, sample_input: int) -> tuple[int, int, int, int] | None:
    """Integer pico-dollar rates per token for inputs in the tier of ``sample_input``
    (the rates of a tier are measured at a total input inside it); None when a rate
    is not a whole number of pico-dollars."""
    x = sample_input

    def pico(inp: int, out: int, cr: int, cw: int) -> Decimal:
        return price.calc_price(_usage(inp, out, cr, cw))["total_price"] * 10**12

    base = pico(x, 0, 0, 0)
    totals = (base, pico(x, x, 0, 0) - base, pico(x, 0, x, 0), pico(x, 0, 0, x))
    rates = []
    for total in totals:
        rate = total / x
        if rate != rate.to_integral_value():
            return None
        rates.append(int(rate))
    return rates[0], rates[1], rates[2], rates[3]


class Pricer:
    """Prices tokens events from the bundled snapshot (see the module docstring)."""

    __slots__ = ("_by_minute", "_by_price", "_day", "_models", "_periods", "version")

    def __init__(self) -> None:
        self.version = PRICES_VERSION
        # (provider, model) -> the package's ModelInfo, or None: unpriced
        self._models: dict[tuple[str, str], ModelInfo | None] = {}
        # (provider, model, UTC day or minute) -> rates per tier, or None (fall back)
        self._periods: dict[tuple[str, str, int], list[Any] | None] = {}
        self._by_minute: dict[tuple[str, str], bool] = {}  # model -> prices change by time of day
        # (provider, model, UTC day) -> four rates (untiered), _UNPRICED or _GENERAL
        self._day: dict[tuple[str, str, int], object] = {}
        # id(ModelPrice) -> (the price, its rates per tier): resolved once per price period
        self._by_price: dict[int, tuple[ModelPrice, list[Any] | None]] = {}

    def _model(self, provider: str, model: str) -> ModelInfo | None:
        key = (provider, model)
        if key in self._models:
            return self._models[key]
        try:
            _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
        except LookupError:
            info = None
        self._models[key] = info
        if info is not None:
            prices = info.prices
            self._by_minute[key] = isinstance(prices, list) and any(
                c.constraint is not None and not isinstance(c.constraint, StartDateConstraint)
                for c in prices)
        return info

    def is_priced(self, provider: str, model: str) -> bool:
        return self._model(provider, model) is not None

    def cost(self, provider: str, model: str, t_ms: int, inp: int, out: int,
             cache_read: int = 0, cache_write: int = 0) -> int | None:
        """Micro-dollars of one event, or None: the table does not know the model."""
        # Hot path: one lookup per (model, UTC day) gives an untiered model's four rates.
        key = (provider, model, t_ms // DAY_MS)
        rates = self._day.get(key)
        if rates is None:
            rates = self._day[key] = self._classify(provider, model, t_ms)
        if type(rates) is tuple:
            uncached = inp - cache_read - cache_write
            if uncached >= 0:
                r_in, r_out, r_cr, r_cw = rates
                pico = r_in * uncached + r_out * out + r_cr * cache_read + r_cw * cache_write
                q, r = divmod(pico, _PICO_PER_MICRO)
                if 2 * r > _PICO_PER_MICRO or (2 * r == _PICO_PER_MICRO and q & 1):
                    q += 1
                return int(q)
        if rates is _UNPRICED:
            return None
        return self._general(provider, model, t_ms, inp, out, cache_read, cache_write)

    def _classify(self, provider: str, model: str, t_ms: int) -> object:
        """What ``cost`` keeps per (model, UTC day): four rates, unpriced, or general."""
        info = self._model(provider, model)
        if info is None:
            return _UNPRICED
        if self._by_minute[(provider, model)]:
            return _GENERAL
        tiers = self._tiers(provider, model, info, t_ms)
        if tiers is not None and not tiers[-1]:  # no tier starts: one linear rate set
            return tuple(tiers[0])
        return _GENERAL

    def _tiers(self, provider: str, model: str, info: ModelInfo, t_ms: int
               ) -> list[Any] | None:
        # Dated prices switch at UTC midnight; time-of-day prices (off-peak) by the minute.
        period = t_ms // _MINUTE_MS if self._by_minute[(provider, model)] else t_ms // DAY_MS
        key = (provider, model, period)
        try:
            return self._periods[key]
        except KeyError:
            tiers = self._periods[key] = self._resolve(info, t_ms)
            return tiers

    def _general(self, provider: str, model: str, t_ms: int, inp: int, out: int,
                 cache_read: int, cache_write: int) -> int | None:
        """Tiered or time-of-day prices, or a usage the rates do not cover."""
        info = self._model(provider, model)
        assert info is not None
        tiers = self._tiers(provider, model, info, t_ms)
        price = None
        if tiers is not None:
            price = self._linear(tiers, inp, out, cache_read, cache_write)
        if price is None:
            return self._direct(info, t_ms, inp, out, cache_read, cache_write)
        return price

    def _resolve(self, info: ModelInfo, t_ms: int) -> list[Any] | None:
        """The rates of the price in force at ``t_ms``: resolved once per price object
        (the package returns the same object for every day of one price period)."""
        price = info.get_prices(_at(t_ms))
        known = self._by_price.get(id(price))
        if known is not None and known[0] is price:
            return known[1]
        tiers = self._rates_per_tier(price)
        self._by_price[id(price)] = (price, tiers)
        return tiers

    @staticmethod
    def _rates_per_tier(price: ModelPrice) -> list[Any] | None:
        starts = _tier_starts(price)
        # a tier applies when the total input is above its start (genai_prices.calc_unit_price)
        samples = (1, *(s + 1 for s in starts))
        tiers: list[Any] = []
        for sample in samples:
            try:
                rates = _rates_of(price, sample)
            except ValueError:
                return None
            if rates is None:
                return None
            tiers.append(rates)
        # the tier starts ride along as a last pseudo-row, so the hot path needs one lookup
        tiers.append(starts)
        return tiers

    @staticmethod
    def _linear(tiers: list[Any], inp: int, out: int, cache_read: int,
                cache_write: int) -> int | None:
        starts = tiers[-1]
        tier = 0
        for start in starts:
            if inp > start:
                tier += 1
        r_in, r_out, r_cr, r_cw = tiers[tier]
        uncached = inp - cache_read - cache_write
        if uncached < 0:
            return None
        return _round_pico(r_in * uncached + r_out * out + r_cr * cache_read + r_cw * cache_write)

    @staticmethod
    def _direct(info: ModelInfo, t_ms: int, inp: int, out: int, cache_read: int,
                cache_write: int) -> int | None:
        try:
            price = info.get_prices(_at(t_ms)).calc_price(_usage(inp, out, cache_read, cache_write))
        except ValueError:
            return None
        return micro_dollars(price["total_price"])


PRICER: Final = Pricer()
