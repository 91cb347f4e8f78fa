"""The cost ledger: tokens events priced with genai-prices, in integer micro-dollars."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from genai_prices import Usage, calc_price

from schemas.aggregates import values_of
from streams.core.meter import WorkspaceMeter
from streams.core.pricing import PRICER, PRICES_VERSION, Pricer, micro_dollars
from streams.core.state_codec import meter_from_state, meter_to_state
from streams.core.usage import MachineUsage
from tests.streams.core.builders import ms, plan, tokens


def package_price(provider: str, model: str, at_ms: int, inp: int, out: int,
                  cache_read: int = 0, cache_write: int = 0) -> int:
    """What genai_prices.calc_price answers, called directly, in micro-dollars."""
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cache_read,
                  cache_write_tokens=cache_write)
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=at_ms)
    return micro_dollars(calc_price(usage, model, provider_id=provider,
                                    genai_request_timestamp=when).total_price)


def test_hand_computed_prices_of_three_providers_match_the_package() -> None:
    at = ms("2026-03-02T10:00:00Z")
    # openai gpt-4o: $2.50 / MTok input, $10 output, $1.25 cache read
    # 10,000 input of which 4,000 cached, 1,000 output:
    # 6,000 x 2.5 + 4,000 x 1.25 + 1,000 x 10 = 15,000 + 5,000 + 10,000 = 30,000 uUSD
    assert PRICER.cost("openai", "gpt-4o", at, 10_000, 1_000, 4_000, 0) == 30_000
    assert package_price("openai", "gpt-4o", at, 10_000, 1_000, 4_000) == 30_000
    # anthropic claude-3-5-sonnet: $3 input, $15 output, $0.30 cache read, $3.75 cache write
    # 2,000 input (1,000 read, 500 written), 100 output:
    # 500 x 3 + 1,000 x 0.3 + 500 x 3.75 + 100 x 15 = 1,500 + 300 + 1,875 + 1,500 = 5,175
    assert PRICER.cost("anthropic", "claude-3-5-sonnet", at, 2_000, 100, 1_000, 500) == 5_175
    assert package_price("anthropic", "claude-3-5-sonnet", at, 2_000, 100, 1_000, 500) == 5_175
    # google gemini-2.0-flash: $0.10 input, $0.40 output: 7 input, 3 output = 0.7 + 1.2
    # = 1.9 uUSD, rounded half to even per event: 2
    assert PRICER.cost("google", "gemini-2.0-flash", at, 7, 3) == 2
    assert package_price("google", "gemini-2.0-flash", at, 7, 3) == 2


def test_a_dated_price_change_applies_from_its_utc_day() -> None:
    # claude-sonnet-4-6: above 200k input tokens a tier at $6 input until 2026-03-12;
    # from 2026-03-13 (UTC) one flat $3 rate
    before = ms("2026-03-12T23:59:59Z")
    after = ms("2026-03-13T00:00:00Z")
    assert PRICER.cost("anthropic", "claude-sonnet-4-6", before, 250_000, 0) == 1_500_000
    assert PRICER.cost("anthropic", "claude-sonnet-4-6", after, 250_000, 0) == 750_000
    for at in (before, after):
        assert PRICER.cost("anthropic", "claude-sonnet-4-6", at, 250_000, 0) == \
            package_price("anthropic", "claude-sonnet-4-6", at, 250_000, 0)


def test_unknown_models_and_providers_are_unpriced() -> None:
    assert PRICER.cost("openai", "no-such-model-xyz", 0, 10, 10) is None
    assert PRICER.cost("no-such-provider", "gpt-4o", 0, 10, 10) is None
    assert not PRICER.is_priced("openai", "no-such-model-xyz")
    assert PRICER.is_priced("openai", "gpt-4o")


def test_random_events_price_exactly_as_calc_price() -> None:
    """The cached integer rates agree with the package for every event (tiers above
    200k input, cache tokens, dated prices, deepseek's time-of-day prices)."""
    rng = random.Random(17)
    models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6"),
              ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-pro"),
              ("google", "gemini-2.0-flash"), ("mistral", "mistral-large"),
              ("deepseek", "deepseek-chat")]
    pricer = Pricer()
    start = ms("2026-01-01T00:00:00Z")
    for _ in range(600):
        provider, model = rng.choice(models)
        at = start + rng.randrange(0, 200 * 86_400_000)
        inp = rng.choice([rng.randrange(0, 5_000), rng.randrange(190_000, 260_000)])
        cache_read = rng.randrange(0, inp // 2 + 1) if rng.random() < 0.5 else 0
        cache_write = rng.randrange(0, (inp - cache_read) // 2 + 1) if rng.random() < 0.3 else 0
        out = rng.randrange(0, 3_000)
        assert pricer.cost(provider, model, at, inp, out, cache_read, cache_write) == \
            package_price(provider, model, at, inp, out, cache_read, cache_write), \
            (provider, model, at, inp, out, cache_read, cache_write)


def test_micro_dollars_round_half_to_even() -> None:
    assert micro_dollars(Decimal("0.0000025")) == 2
    assert micro_dollars(Decimal("0.0000035")) == 4
    assert micro_dollars(Decimal("1.2345674")) == 1_234_567


def test_the_meter_breaks_cost_down_like_tokens() -> None:
    meter = WorkspaceMeter("w1")
    meter.apply(plan("2026-03-01T00:00:00Z", anchor="2026-03-01T00:00:00Z", ai_tokens=10**9))
    meter.apply(tokens("2026-03-02T00:00:00Z", 10_000, out=1_000, cache_read=4_000,
                       member="kim", machine="m1", skill="search", provider="openai",
                       model="gpt-4o"))
    meter.apply(tokens("2026-03-12T12:00:00Z", 250_000, member="lee",
                       provider="anthropic", model="claude-sonnet-4-6"))
    meter.apply(tokens("2026-03-14T12:00:00Z", 250_000, member="lee",
                       provider="anthropic", model="claude-sonnet-4-6"))
    meter.apply(tokens("2026-03-15T00:00:00Z", 500, out=20, member="kim",
                       provider="acme", model="in-house-1"))
    cycle = meter.cur
    assert cycle is not None
    assert cycle.ai_tokens == 11_000 + 500_000 + 520  # cache tokens are part of input
    assert cycle.cost_micros == 30_000 + 1_500_000 + 750_000
    assert cycle.unpriced_tokens == 520
    cost = cycle.to_usage_json()["cost"]
    assert cost["total"] == 2_280_000
    assert cost["prices"] == PRICES_VERSION
    assert cost["members"] == {"kim": 30_000, "lee": 2_250_000}
    assert cost["machines"] == {"m1": 30_000}
    assert cost["skills"] == {"search": 30_000}
    assert cost["models"]["openai/gpt-4o"] == {
        "cost": 30_000, "cache_read_tokens": 4_000, "cache_write_tokens": 0, "priced": True,
        "unpriced_tokens": 0}
    assert cost["models"]["acme/in-house-1"]["priced"] is False
    assert cost["models"]["acme/in-house-1"]["unpriced_tokens"] == 520
    (record,) = meter.take_changed_aggregates(1)
    assert record["prices_version"] == PRICES_VERSION
    values = {(d, k, m): v for d, k, m, v in values_of(record)}
    assert values[("totals", "", "cost_micros")] == 2_280_000
    assert values[("totals", "", "unpriced_tokens")] == 520
    assert values[("member", "lee", "cost_micros")] == 2_250_000
    assert values[("model", "acme/in-house-1", "unpriced_tokens")] == 520
    assert values[("provider", "openai", "cache_read_tokens")] == 4_000


def test_state_written_before_costs_restores_with_zero_cost() -> None:
    meter = WorkspaceMeter("w1")
    meter.apply(tokens("2026-03-02T00:00:00Z", 100, machine="m1", skill="s"))
    state = meter_to_state(meter)
    # the format before costs: no cost slot, shorter breakdown lists
    for key in ("cur",):
        cycle = state[key]
        del cycle[12]
        cycle[5] = {k: v[:2] for k, v in cycle[5].items()}
        cycle[6] = {k: v[:4] for k, v in cycle[6].items()}
        cycle[7] = {k: v[:3] for k, v in cycle[7].items()}
        cycle[8] = {k: v[:2] for k, v in cycle[8].items()}
        cycle[9] = {p: {m: v[:2] for m, v in ms_.items()} for p, ms_ in cycle[9].items()}
    old = meter_from_state(state)
    assert old.cur is not None and old.cur.cost_micros == 0 and old.cur.prices_version is None
    old.apply(tokens("2026-03-03T00:00:00Z", 1_000_000, machine="m1", skill="s"))
    assert old.cur.cost_micros == 2_500_000
    assert old.cur.by_machine["m1"] == MachineUsage(0, 1_000_100, 2_500_000)
    assert old.cur.by_model["openai"]["gpt-4o"].cost_micros == 2_500_000
