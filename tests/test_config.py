"""The exchange configuration: the packaged default, where the file is found, and every refusal.

Most refusal tests start from the packaged default (parsed into a plain mapping), change one thing and
check that :class:`ConfigError` names the key that is wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from decimal import Decimal
from importlib import resources
from typing import Any, Callable

import pytest

from common.config import (
    BPS_DENOMINATOR,
    CONFIG_ENV_VAR,
    MAX_FEE_BPS,
    MAX_LEVELS_PER_SYMBOL,
    ConfigError,
    Durability,
    ExchangeConfig,
    SelfTradePrevention,
    default_config,
    default_document,
    load_config,
    parse_config,
    parse_config_text,
)
from common.fixedpoint import INT64_MAX

DEFAULT_TEXT = resources.files("common").joinpath("default_config.toml").read_text(encoding="utf-8")

# A small, valid file that differs visibly from the default: one symbol, other fees.
OTHER_TEXT = """
[engine]
self_trade_prevention = "off"
event_buffer = 1024
reports = "ipc:///tmp/other-reports"
queries = "ipc:///tmp/other-queries"
recent_reports = 1000
recent_market_messages = 1000
snapshot_every_commands = 5000
snapshot_every_s = 10
snapshots_kept = 2
snapshot_map_bytes = 1048576
catch_up_reports = 100
pretouch = false
market_interval_us = 0

[sequencer]
intake = "ipc:///tmp/other-intake"
stream = "ipc:///tmp/other-stream"
replay = "ipc:///tmp/other-replay"
durability = "fsync"
max_batch = 64
heartbeat_ms = 100
journal_map_bytes = 1048576
journal_max_bytes = 2097152

[gateway]
logon_window_ms = 1000
heartbeat_s = 5
max_message_bytes = 4096

[[gateway.instances]]
id = 9
name = "other"
fix = "ipc:///tmp/other-fix"

[quotation]
# PUB quotation binds: trades, depth diffs, K-lines and tickers, for the pusher.
market = "ipc:///tmp/other-market"
# ROUTER quotation binds: bars in a time range, recent trades, depth snapshots, tickers.
queries = "ipc:///tmp/other-quotes"
# Trades kept per symbol (LMDB under paths.data_dir/quotation) for history and for catching up.
recent_trades = 100000
# 1-second bars are kept this long; bars of 1m and longer are kept for good.
second_bars_kept_s = 604800
store_map_bytes = 268435456

[pusher]
# The WebSocket server (docs/market-data.md).
host = "127.0.0.1"
port = 7200
max_connections = 10000
max_subscriptions = 64
# Bytes waiting to be sent to one connection; a client that falls this far behind is disconnected.
send_buffer_bytes = 4194304
ping_interval_s = 20
ping_timeout_s = 20
auth_window_ms = 30000

[paths]
data_dir = "/tmp/other/data"
log_dir = "/tmp/other/log"

[fees]
maker_bps = 0
taker_bps = 10
fee_account = 7

[capacity]
max_open_orders = 100
max_accounts = 50

[[assets]]
name = "AAA"
decimals = 2

[[assets]]
name = "BBB"
decimals = 0

[[symbols]]
name = "AAA-BBB"
base = "AAA"
quote = "BBB"
tick_size = "1"
lot_size = "1"
min_qty = "1"
max_qty = "100"
min_notional = "0"
price_min = "1"
price_max = "1000"
"""


def refusal(document: dict[str, Any]) -> str:
    """The message of the ConfigError that ``document`` must raise."""
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    return str(info.value)


def changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = default_document()
    change(document)
    return document


def set_key(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets document[path[0]][path[1]]... to ``value``."""

    def change(document: dict[str, Any]) -> None:
        target = document
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def delete_key(*path: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target = document
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return change


def one_symbol_document(**symbol: Any) -> dict[str, Any]:
    """The default document with a single symbol: BTC-USDT with ``symbol``'s keys replaced."""
    document = default_document()
    document["symbols"] = [{**document["symbols"][0], **symbol}]
    return document


# --- the packaged default -----------------------------------------------------------------------------


class TestThePackagedDefault:
    def test_it_lists_btc_eth_and_usdt_with_ids_in_file_order(self):
        config = default_config()
        assert [(a.id, a.name, a.decimals) for a in config.assets] == [
            (0, "BTC", 8),
            (1, "ETH", 8),
            (2, "USDT", 6),
        ]

    def test_it_lists_three_symbols_with_ids_in_file_order(self):
        config = default_config()
        assert [(s.id, s.name, s.base.name, s.quote.name) for s in config.symbols] == [
            (0, "BTC-USDT", "BTC", "USDT"),
            (1, "ETH-USDT", "ETH", "USDT"),
            (2, "ETH-BTC", "ETH", "BTC"),
        ]

    def test_symbols_refer_to_the_very_asset_objects_of_the_config(self):
        config = default_config()
        for symbol in config.symbols:
            assert symbol.base is config.asset(symbol.base.name)
            assert symbol.quote is config.asset(symbol.quote.name)

    @pytest.mark.parametrize(
        "name, derived",
        [
            (
                "BTC-USDT",
                dict(
                    base_units_per_lot=10_000,  # 0.0001 BTC = 10^4 satoshi
                    quote_units_per_tick_lot=10,  # 0.1 x 0.0001 = 0.00001 USDT = 10 micro-USDT
                    min_price_ticks=10_000,  # 1000 / 0.1
                    max_price_ticks=3_000_000,  # 300000 / 0.1
                    min_qty_lots=1,
                    max_qty_lots=10_000_000,  # 1000 / 0.0001
                    min_notional_units=5_000_000,  # 5 USDT
                ),
            ),
            (
                "ETH-USDT",
                dict(
                    base_units_per_lot=10_000,
                    quote_units_per_tick_lot=1,  # 0.01 x 0.0001 = 0.000001 USDT
                    min_price_ticks=1_000,
                    max_price_ticks=2_000_000,
                    min_qty_lots=1,
                    max_qty_lots=100_000_000,
                    min_notional_units=5_000_000,
                ),
            ),
            (
                "ETH-BTC",
                dict(
                    base_units_per_lot=100_000,  # 0.001 ETH
                    quote_units_per_tick_lot=1,  # 0.00001 x 0.001 = 10^-8 BTC = 1 satoshi
                    min_price_ticks=100,
                    max_price_ticks=100_000,
                    min_qty_lots=1,
                    max_qty_lots=10_000_000,
                    min_notional_units=10_000,  # 0.0001 BTC
                ),
            ),
        ],
    )
    def test_each_symbol_has_the_right_derived_integers(self, name, derived):
        symbol = default_config().symbol(name)
        assert {key: getattr(symbol, key) for key in derived} == derived

    def test_ticks_and_lots_are_read_exactly(self):
        config = default_config()
        assert (config.symbol("BTC-USDT").tick.text, config.symbol("BTC-USDT").lot.text) == ("0.1", "0.0001")
        assert (config.symbol("ETH-USDT").tick.text, config.symbol("ETH-USDT").lot.text) == ("0.01", "0.0001")
        assert (config.symbol("ETH-BTC").tick.text, config.symbol("ETH-BTC").lot.text) == ("0.00001", "0.001")

    def test_the_number_of_price_levels_is_the_band_width_in_ticks(self):
        config = default_config()
        assert config.symbol("BTC-USDT").levels == 3_000_000 - 10_000 + 1
        assert config.symbol("ETH-BTC").levels == 100_000 - 100 + 1

    def test_fees_capacity_and_engine_settings(self):
        config = default_config()
        assert (config.fees.maker_bps, config.fees.taker_bps, config.fees.fee_account) == (2, 5, 0)
        assert config.fees.reserve_bps == 5
        assert (config.capacity.max_open_orders, config.capacity.max_accounts) == (1_000_000, 100_000)
        assert config.engine.self_trade_prevention is SelfTradePrevention.CANCEL_TAKER
        assert config.engine.event_buffer == 65_536
        assert config.engine.pretouch is True

    def test_its_source_says_it_is_the_default(self):
        assert "default" in default_config().source

    def test_looking_up_an_unknown_asset_or_symbol_raises_key_error(self):
        config = default_config()
        with pytest.raises(KeyError):
            config.asset("DOGE")
        with pytest.raises(KeyError):
            config.symbol("DOGE-USDT")


class TestConfigObjectsAreFrozen:
    @pytest.mark.parametrize(
        "target, attribute",
        [
            (lambda c: c, "symbols"),
            (lambda c: c.asset("BTC"), "decimals"),
            (lambda c: c.symbol("BTC-USDT"), "max_price_ticks"),
            (lambda c: c.fees, "maker_bps"),
            (lambda c: c.capacity, "max_accounts"),
            (lambda c: c.engine, "self_trade_prevention"),
        ],
    )
    def test_assigning_to_a_field_raises(self, target, attribute):
        obj = target(default_config())
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attribute, getattr(obj, attribute))

    def test_the_lists_of_assets_and_symbols_are_tuples(self):
        config = default_config()
        assert isinstance(config.assets, tuple)
        assert isinstance(config.symbols, tuple)


# --- where the file is found --------------------------------------------------------------------------


class TestLoadConfigFindsTheFile:
    def test_without_path_or_environment_variable_it_loads_the_packaged_default(self, monkeypatch):
        monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
        assert load_config() == default_config()

    def test_an_empty_environment_variable_means_the_packaged_default(self, monkeypatch):
        monkeypatch.setenv(CONFIG_ENV_VAR, "")
        assert load_config() == default_config()

    def test_it_honours_the_environment_variable(self, monkeypatch, tmp_path):
        path = tmp_path / "exchange.toml"
        path.write_text(OTHER_TEXT, encoding="utf-8")
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        config = load_config()
        assert [s.name for s in config.symbols] == ["AAA-BBB"]
        assert config.fees.fee_account == 7
        assert config.source == str(path)

    def test_it_honours_an_explicit_path(self, monkeypatch, tmp_path):
        monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
        path = tmp_path / "exchange.toml"
        path.write_text(OTHER_TEXT, encoding="utf-8")
        assert [s.name for s in load_config(path).symbols] == ["AAA-BBB"]
        assert [s.name for s in load_config(str(path)).symbols] == ["AAA-BBB"]

    def test_an_explicit_path_wins_over_the_environment_variable(self, monkeypatch, tmp_path):
        explicit = tmp_path / "explicit.toml"
        explicit.write_text(OTHER_TEXT, encoding="utf-8")
        from_env = tmp_path / "from_env.toml"
        from_env.write_text(DEFAULT_TEXT, encoding="utf-8")
        monkeypatch.setenv(CONFIG_ENV_VAR, str(from_env))
        assert load_config(explicit).source == str(explicit)

    def test_default_config_ignores_the_environment_variable(self, monkeypatch, tmp_path):
        path = tmp_path / "exchange.toml"
        path.write_text(OTHER_TEXT, encoding="utf-8")
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        assert [s.name for s in default_config().symbols] == ["BTC-USDT", "ETH-USDT", "ETH-BTC"]

    def test_a_missing_file_gives_a_config_error_naming_the_path(self, tmp_path):
        path = tmp_path / "no-such-file.toml"
        with pytest.raises(ConfigError, match="no-such-file.toml"):
            load_config(path)

    def test_a_missing_file_named_by_the_environment_variable_gives_a_config_error(self, monkeypatch, tmp_path):
        path = tmp_path / "gone.toml"
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        with pytest.raises(ConfigError, match="gone.toml"):
            load_config()

    def test_a_directory_instead_of_a_file_gives_a_config_error(self, tmp_path):
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path)

    def test_a_file_that_is_not_utf8_gives_a_config_error_naming_the_path(self, tmp_path):
        path = tmp_path / "latin1.toml"
        path.write_bytes(b"# caf\xe9\n" + DEFAULT_TEXT.encode())
        with pytest.raises(ConfigError, match="latin1.toml"):
            load_config(path)

    def test_errors_in_a_file_name_the_file(self, tmp_path):
        path = tmp_path / "bad.toml"
        path.write_text(OTHER_TEXT.replace("maker_bps = 0", "maker_bps = -1"), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"bad\.toml: fees\.maker_bps"):
            load_config(path)


# --- TOML text ----------------------------------------------------------------------------------------


class TestTomlText:
    def test_invalid_toml_is_refused_as_not_valid_toml(self):
        with pytest.raises(ConfigError, match="not valid TOML"):
            parse_config_text("[engine\nself_trade_prevention = 'off'\n", source="broken.toml")

    def test_invalid_toml_names_the_source(self):
        with pytest.raises(ConfigError, match="broken.toml"):
            parse_config_text("= 1", source="broken.toml")

    def test_the_default_text_parses_to_the_default_config(self):
        assert parse_config_text(DEFAULT_TEXT, source="x") == dataclasses.replace(default_config(), source="x")

    def test_toml_floats_are_read_exactly(self):
        text = DEFAULT_TEXT.replace('tick_size = "0.01"', "tick_size = 0.01").replace(
            'price_max = "300000"', "price_max = 300000.3"
        )
        config = parse_config_text(text)
        eth_usdt = config.symbol("ETH-USDT")
        assert (eth_usdt.tick.mantissa, eth_usdt.tick.exponent) == (1, 2)
        assert eth_usdt.quote_units_per_tick_lot == 1
        # 300000.3 has no exact binary form; read as a float it would not be a whole number of ticks.
        assert config.symbol("BTC-USDT").max_price_ticks == 3_000_003

    def test_toml_integers_are_accepted_for_decimal_values(self):
        text = DEFAULT_TEXT.replace('max_qty = "1000"', "max_qty = 1000").replace(
            'price_min = "1000"', "price_min = 1_000"
        )
        btc_usdt = parse_config_text(text).symbol("BTC-USDT")
        assert (btc_usdt.max_qty_lots, btc_usdt.min_price_ticks) == (10_000_000, 10_000)

    @pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
    def test_toml_nan_and_infinity_are_refused(self, literal):
        text = DEFAULT_TEXT.replace('tick_size = "0.01"', f"tick_size = {literal}")
        with pytest.raises(ConfigError, match=r"symbols\[1\]\.tick_size: must be finite"):
            parse_config_text(text)

    def test_a_negative_toml_float_is_refused(self):
        text = DEFAULT_TEXT.replace('tick_size = "0.01"', "tick_size = -0.01")
        with pytest.raises(ConfigError, match=r"symbols\[1\]\.tick_size: .*negative"):
            parse_config_text(text)


# --- unknown and missing keys -------------------------------------------------------------------------


class TestUnknownKeysAreRefused:
    @pytest.mark.parametrize(
        "change, key",
        [
            (set_key("fee", value={}), "fee"),
            (set_key("fees", "rebate_bps", value=1), "fees.rebate_bps"),
            (set_key("capacity", "max_symbols", value=10), "capacity.max_symbols"),
            (set_key("engine", "mode", value="fast"), "engine.mode"),
            (set_key("assets", 0, "precision", value=2), "assets[0].precision"),
            (set_key("symbols", 1, "tik_size", value="0.01"), "symbols[1].tik_size"),
            (set_key("symbols", 2, "min_price", value="1"), "symbols[2].min_price"),
        ],
    )
    def test_the_error_names_the_unknown_key(self, change, key):
        message = refusal(changed(change))
        assert f": {key}: unknown key" in message

    def test_a_misspelt_key_is_refused_naming_the_key_it_should_have_been_or_the_misspelling(self):
        def rename(document):
            document["symbols"][1]["tik_size"] = document["symbols"][1].pop("tick_size")

        message = refusal(changed(rename))
        assert "symbols[1].tick_size: missing key" in message or "symbols[1].tik_size: unknown key" in message


class TestMissingKeysAreRefused:
    @pytest.mark.parametrize(
        "path",
        [
            ("fees",),
            ("capacity",),
            ("engine",),
            ("assets",),
            ("symbols",),
            ("fees", "maker_bps"),
            ("fees", "taker_bps"),
            ("fees", "fee_account"),
            ("capacity", "max_open_orders"),
            ("capacity", "max_accounts"),
            ("engine", "self_trade_prevention"),
            ("engine", "event_buffer"),
            ("assets", 2, "name"),
            ("assets", 2, "decimals"),
            *[
                ("symbols", 1, key)
                for key in (
                    "name",
                    "base",
                    "quote",
                    "tick_size",
                    "lot_size",
                    "min_qty",
                    "max_qty",
                    "min_notional",
                    "price_min",
                    "price_max",
                )
            ],
        ],
    )
    def test_the_error_names_the_missing_key(self, path):
        key = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")
        message = refusal(changed(delete_key(*path)))
        assert f": {key}: missing key" in message

    def test_an_empty_list_of_assets_is_refused(self):
        assert "assets: at least one asset" in refusal(changed(set_key("assets", value=[])))


# --- bad values ---------------------------------------------------------------------------------------


class TestFeesAreChecked:
    @pytest.mark.parametrize("key", ["maker_bps", "taker_bps"])
    def test_a_negative_fee_is_refused(self, key):
        assert f"fees.{key}: -1 is below the minimum 0" in refusal(changed(set_key("fees", key, value=-1)))

    @pytest.mark.parametrize("key", ["maker_bps", "taker_bps"])
    def test_a_fee_above_the_maximum_is_refused(self, key):
        message = refusal(changed(set_key("fees", key, value=MAX_FEE_BPS + 1)))
        assert f"fees.{key}: {MAX_FEE_BPS + 1} is above the maximum {MAX_FEE_BPS}" in message

    def test_the_largest_fee_is_accepted(self):
        config = parse_config(changed(set_key("fees", "taker_bps", value=MAX_FEE_BPS)))
        assert config.fees.reserve_bps == MAX_FEE_BPS

    def test_zero_fees_are_accepted(self):
        document = changed(set_key("fees", "maker_bps", value=0))
        document["fees"]["taker_bps"] = 0
        assert parse_config(document).fees.reserve_bps == 0

    def test_the_reserve_rate_is_the_larger_of_maker_and_taker(self):
        document = changed(set_key("fees", "maker_bps", value=9))
        document["fees"]["taker_bps"] = 4
        assert parse_config(document).fees.reserve_bps == 9

    def test_a_negative_fee_account_is_refused(self):
        assert "fees.fee_account" in refusal(changed(set_key("fees", "fee_account", value=-1)))

    def test_a_fee_account_equal_to_max_accounts_is_refused(self):
        assert "fees.fee_account" in refusal(changed(set_key("fees", "fee_account", value=100_000)))

    def test_a_fee_account_above_max_accounts_is_refused(self):
        assert "fees.fee_account" in refusal(changed(set_key("fees", "fee_account", value=200_000)))

    def test_the_last_account_may_be_the_fee_account(self):
        assert parse_config(changed(set_key("fees", "fee_account", value=99_999))).fees.fee_account == 99_999


class TestCapacityAndEngineAreChecked:
    @pytest.mark.parametrize("key", ["max_open_orders", "max_accounts"])
    def test_a_capacity_of_zero_is_refused(self, key):
        document = changed(set_key("capacity", key, value=0))
        assert f"capacity.{key}: 0 is below the minimum 1" in refusal(document)

    @pytest.mark.parametrize("key", ["max_open_orders", "max_accounts"])
    def test_a_capacity_that_does_not_fit_an_int32_index_is_refused(self, key):
        assert f"capacity.{key}" in refusal(changed(set_key("capacity", key, value=1 << 31)))

    @pytest.mark.parametrize("value", [63, 1 << 27])
    def test_an_event_buffer_out_of_range_is_refused(self, value):
        assert "engine.event_buffer" in refusal(changed(set_key("engine", "event_buffer", value=value)))

    @pytest.mark.parametrize("mode", list(SelfTradePrevention))
    def test_every_self_trade_prevention_mode_is_accepted_by_its_lower_case_name(self, mode):
        document = changed(set_key("engine", "self_trade_prevention", value=mode.name.lower()))
        assert parse_config(document).engine.self_trade_prevention is mode

    @pytest.mark.parametrize("value", ["cancel_newest", "", "cancel taker", "none"])
    def test_an_unknown_self_trade_prevention_mode_is_refused_listing_the_choices(self, value):
        message = refusal(changed(set_key("engine", "self_trade_prevention", value=value)))
        assert "engine.self_trade_prevention" in message
        assert "off, cancel_taker, cancel_maker, cancel_both" in message


class TestTypesAreChecked:
    @pytest.mark.parametrize(
        "change, key",
        [
            (set_key("capacity", "max_accounts", value="100000"), "capacity.max_accounts"),
            (set_key("fees", "maker_bps", value="2"), "fees.maker_bps"),
            (set_key("engine", "event_buffer", value=Decimal("65536.0")), "engine.event_buffer"),
            (set_key("assets", 0, "decimals", value="8"), "assets[0].decimals"),
        ],
    )
    def test_a_string_or_float_where_an_integer_belongs_is_refused(self, change, key):
        assert f"{key}: must be an integer" in refusal(changed(change))

    @pytest.mark.parametrize(
        "change, key",
        [
            (set_key("fees", "taker_bps", value=True), "fees.taker_bps"),
            (set_key("fees", "fee_account", value=False), "fees.fee_account"),
            (set_key("assets", 1, "decimals", value=True), "assets[1].decimals"),
            (set_key("capacity", "max_open_orders", value=True), "capacity.max_open_orders"),
        ],
    )
    def test_a_boolean_where_an_integer_belongs_is_refused(self, change, key):
        assert f"{key}: must be an integer" in refusal(changed(change))

    @pytest.mark.parametrize(
        "change, key",
        [
            (set_key("engine", "self_trade_prevention", value=1), "engine.self_trade_prevention"),
            (set_key("assets", 0, "name", value=7), "assets[0].name"),
            (set_key("symbols", 0, "base", value=["BTC"]), "symbols[0].base"),
        ],
    )
    def test_a_non_string_where_a_string_belongs_is_refused(self, change, key):
        assert f"{key}: must be a string" in refusal(changed(change))

    @pytest.mark.parametrize("value", [True, ["0.1"], {"value": "0.1"}])
    def test_a_boolean_list_or_table_where_a_decimal_belongs_is_refused(self, value):
        message = refusal(changed(set_key("symbols", 0, "tick_size", value=value)))
        assert "symbols[0].tick_size: must be a decimal number" in message

    @pytest.mark.parametrize("value", [1, "true", 0])
    def test_anything_but_true_or_false_where_a_flag_belongs_is_refused(self, value):
        assert "engine.pretouch: must be true or false" in refusal(changed(set_key("engine", "pretouch", value=value)))

    def test_a_section_that_is_not_a_table_is_refused(self):
        assert "fees: must be a table" in refusal(changed(set_key("fees", value=5)))

    def test_assets_that_are_not_an_array_of_tables_are_refused(self):
        assert "assets: must be an array of tables" in refusal(changed(set_key("assets", value={"name": "BTC"})))

    def test_an_array_entry_that_is_not_a_table_is_refused(self):
        assert "symbols[1]: must be a table" in refusal(changed(set_key("symbols", 1, value="ETH-USDT")))


class TestAssetsAreChecked:
    def test_an_asset_listed_twice_is_refused(self):
        message = refusal(changed(set_key("assets", 1, "name", value="BTC")))
        assert "assets[1].name: asset 'BTC' is listed twice" in message

    @pytest.mark.parametrize("name", ["btc", "", "BTC-X", "A" * 17, "BTC "])
    def test_a_malformed_asset_name_is_refused(self, name):
        assert "assets[0].name" in refusal(changed(set_key("assets", 0, "name", value=name)))

    @pytest.mark.parametrize("decimals", [-1, 19])
    def test_decimals_out_of_range_are_refused(self, decimals):
        assert "assets[0].decimals" in refusal(changed(set_key("assets", 0, "decimals", value=decimals)))


class TestSymbolsAreChecked:
    def test_a_symbol_listed_twice_is_refused(self):
        message = refusal(changed(set_key("symbols", 1, "name", value="BTC-USDT")))
        assert "symbols[1].name: symbol 'BTC-USDT' is listed twice" in message

    @pytest.mark.parametrize("name", ["btc-usdt", "", "BTC/USDT", "-BTC", "A" * 33])
    def test_a_malformed_symbol_name_is_refused(self, name):
        assert "symbols[0].name" in refusal(changed(set_key("symbols", 0, "name", value=name)))

    def test_a_symbol_with_an_unknown_base_asset_is_refused(self):
        message = refusal(changed(set_key("symbols", 0, "base", value="DOGE")))
        assert "symbols[0].base: unknown asset 'DOGE'" in message

    def test_a_symbol_with_an_unknown_quote_asset_is_refused(self):
        assert "symbols[2].quote: unknown asset 'EUR'" in refusal(changed(set_key("symbols", 2, "quote", value="EUR")))

    def test_a_symbol_whose_base_is_its_quote_is_refused(self):
        message = refusal(changed(set_key("symbols", 0, "quote", value="BTC")))
        assert "symbols[0].quote: base and quote must be different assets" in message

    def test_a_lot_that_is_not_a_whole_number_of_base_units_is_refused(self):
        # BTC has 8 decimals: 10^-9 BTC is below its smallest unit.
        message = refusal(changed(set_key("symbols", 0, "lot_size", value="0.000000001")))
        assert "symbols[0].lot_size: must be a whole number of the smallest unit of BTC" in message

    def test_a_lot_of_one_and_a_half_base_units_is_refused(self):
        document = one_symbol_document(lot_size="0.000000015", min_qty="0.00000003", max_qty="0.00000003")
        assert "symbols[0].lot_size" in refusal(document)

    def test_a_tick_times_lot_that_is_not_a_whole_number_of_quote_units_is_refused(self):
        # 0.1 x 0.00000001 = 10^-9 USDT, below USDT's smallest unit of 10^-6.
        document = one_symbol_document(lot_size="0.00000001", min_qty="0.0001")
        message = refusal(document)
        assert "symbols[0].tick_size: must be a whole number of the smallest unit of USDT per lot" in message

    def test_a_tick_finer_than_the_quote_unit_is_accepted_when_a_lot_makes_it_whole(self):
        # A tick of 10^-8 USDT is finer than USDT's unit of 10^-6, but a lot of 100 BTC makes it whole.
        symbol = parse_config(
            one_symbol_document(
                tick_size="0.00000001", lot_size="100", min_qty="100", max_qty="1000", price_max="1000.01"
            )
        ).symbols[0]
        assert symbol.quote_units_per_tick_lot == 1
        assert symbol.base_units_per_lot == 100 * 10**8

    def test_a_tick_that_is_not_a_power_of_ten_is_accepted_and_multiplied_exactly(self):
        symbol = parse_config(
            one_symbol_document(tick_size="0.05", price_min="1000", price_max="300000.05")
        ).symbols[0]
        assert symbol.quote_units_per_tick_lot == 5  # 0.05 x 0.0001 USDT = 5 micro-USDT
        assert (symbol.min_price_ticks, symbol.max_price_ticks) == (20_000, 6_000_001)

    def test_a_price_min_that_is_not_a_multiple_of_the_tick_is_refused(self):
        message = refusal(one_symbol_document(tick_size="0.05", price_min="1000.01"))
        assert "symbols[0].price_min" in message
        assert "not a multiple of 0.05" in message

    def test_a_price_max_below_price_min_is_refused(self):
        message = refusal(changed(set_key("symbols", 0, "price_max", value="999.9")))
        assert "symbols[0].price_max: must not be below price_min" in message

    def test_a_band_of_a_single_price_is_accepted(self):
        symbol = parse_config(one_symbol_document(price_min="1000", price_max="1000")).symbols[0]
        assert symbol.levels == 1

    def test_a_band_of_exactly_the_maximum_number_of_levels_is_accepted(self):
        top = Decimal(MAX_LEVELS_PER_SYMBOL) / 10  # ticks 1 .. MAX_LEVELS_PER_SYMBOL of 0.1
        symbol = parse_config(one_symbol_document(price_min="0.1", price_max=str(top))).symbols[0]
        assert symbol.levels == MAX_LEVELS_PER_SYMBOL

    def test_a_band_one_tick_wider_than_the_maximum_is_refused(self):
        top = Decimal(MAX_LEVELS_PER_SYMBOL + 1) / 10
        message = refusal(one_symbol_document(price_min="0.1", price_max=str(top)))
        assert f"symbols[0].price_max: the band holds {MAX_LEVELS_PER_SYMBOL + 1} ticks" in message

    def test_min_qty_above_max_qty_is_refused(self):
        message = refusal(one_symbol_document(min_qty="2", max_qty="1"))
        assert "symbols[0].max_qty: must not be below min_qty" in message

    def test_min_qty_equal_to_max_qty_is_accepted(self):
        symbol = parse_config(one_symbol_document(min_qty="1", max_qty="1")).symbols[0]
        assert symbol.min_qty_lots == symbol.max_qty_lots == 10_000

    @pytest.mark.parametrize("key", ["min_qty", "max_qty", "price_min", "price_max"])
    def test_a_zero_price_or_quantity_limit_is_refused(self, key):
        assert f"symbols[0].{key}: {key} must be greater than zero" in refusal(one_symbol_document(**{key: "0"}))

    @pytest.mark.parametrize("key", ["tick_size", "lot_size"])
    def test_a_zero_tick_or_lot_is_refused(self, key):
        assert f"symbols[0].{key}" in refusal(one_symbol_document(**{key: "0.000"}))

    def test_a_min_notional_of_zero_is_accepted(self):
        assert parse_config(one_symbol_document(min_notional="0")).symbols[0].min_notional_units == 0

    def test_a_min_notional_finer_than_the_quote_unit_is_refused(self):
        message = refusal(one_symbol_document(min_notional="0.0000001"))
        assert "symbols[0].min_notional" in message

    def test_price_max_times_max_qty_overflowing_int64_is_refused(self):
        # 3 * 10^6 ticks x 10^12 lots x 10 units per tick-lot = 3 * 10^19 > 9.2 * 10^18.
        message = refusal(one_symbol_document(max_qty="100000000"))
        assert "symbols[0].max_qty: price_max x max_qty (plus fees) overflows" in message

    def test_the_overflow_check_counts_the_largest_fee(self):
        # With whole units everywhere, max_qty = INT64_MAX // 10^6 makes the notional itself fit in
        # int64 at price_max = 10^6, but not once the 5 bps taker fee is added on top.
        document = default_document()
        document["assets"] = [{"name": "AAA", "decimals": 0}, {"name": "BBB", "decimals": 0}]
        max_qty = INT64_MAX // 1_000_000
        document["symbols"] = [
            dict(
                name="AAA-BBB",
                base="AAA",
                quote="BBB",
                tick_size="1",
                lot_size="1",
                min_qty="1",
                max_qty=str(max_qty),
                min_notional="0",
                price_min="1",
                price_max="1000000",
            )
        ]
        assert 1_000_000 * max_qty <= INT64_MAX
        assert 1_000_000 * max_qty * (BPS_DENOMINATOR + 5) // BPS_DENOMINATOR > INT64_MAX
        assert "symbols[0].max_qty" in refusal(document)

        document["fees"]["maker_bps"] = document["fees"]["taker_bps"] = 0
        assert parse_config(document).symbols[0].max_qty_lots == max_qty

    @pytest.mark.parametrize(
        "text, why",
        [
            ("1e-2", "exponent"),
            ("1E2", "exponent"),
            ("-0.1", "negative"),
            ("abc", "not a plain decimal"),
            ("NaN", "NaN"),
            ("Infinity", "infinite"),
            ("0.1 ", "not a plain decimal"),
            ("+0.1", "not a plain decimal"),
            (".1", "not a plain decimal"),
            ("", "empty"),
        ],
    )
    @pytest.mark.parametrize("key", ["tick_size", "price_min"])
    def test_a_decimal_that_is_not_written_plainly_is_refused(self, key, text, why):
        message = refusal(changed(set_key("symbols", 1, key, value=text)))
        assert f"symbols[1].{key}: " in message
        assert why in message

    def test_a_step_with_more_digits_than_decimal_precision_is_kept_exactly(self):
        # 30 significant digits: more than Python's default Decimal precision (28). The tick must not be
        # rounded to 1 (which would silently change the market), so this ends up as a too-fine tick.
        message = refusal(one_symbol_document(tick_size="1.00000000000000000000000000001"))
        assert "symbols[0].tick_size: must be a whole number of the smallest unit of USDT" in message


# --- the pipeline's sections -----------------------------------------------------------------------------


class TestThePipelineSections:
    def test_the_default_names_every_endpoint_and_path(self):
        config = default_config()
        assert config.sequencer.intake.startswith("tcp://127.0.0.1:")
        assert config.sequencer.durability is Durability.PROCESS
        assert config.gateway.instance("gw-1").id == 1
        assert config.paths.journal_dir == config.paths.data_dir / "journal"
        assert config.engine.reports != config.engine.queries

    @pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:7000", "ipc:///tmp/x.sock", "inproc://a"])
    def test_zeromq_endpoints_are_accepted(self, endpoint):
        config = parse_config(changed(set_key("sequencer", "intake", value=endpoint)))
        assert config.sequencer.intake == endpoint

    @pytest.mark.parametrize("endpoint", ["127.0.0.1:7000", "http://x:1", "tcp://host", ""])
    def test_anything_else_is_refused_naming_the_key(self, endpoint):
        assert "sequencer.intake" in refusal(changed(set_key("sequencer", "intake", value=endpoint)))

    def test_an_unknown_durability_is_refused_with_the_choices(self):
        message = refusal(changed(set_key("sequencer", "durability", value="sometimes")))
        assert "sequencer.durability" in message and "fsync" in message

    def test_two_gateways_with_one_id_are_refused(self):
        document = default_document()
        document["gateway"]["instances"].append(dict(document["gateway"]["instances"][0], name="gw-2"))
        assert f"gateway.instances[{len(document['gateway']['instances']) - 1}]" in refusal(document)

    def test_a_gateway_needs_either_fix_or_http(self):
        document = default_document()
        document["gateway"]["instances"][0]["http"] = "127.0.0.1:8081"
        assert "a gateway has either fix" in refusal(document)
        document["gateway"]["instances"][0].pop("fix")
        document["gateway"]["instances"][0]["http"] = "127.0.0.1:99999"
        assert "is not host:port" in refusal(document)

    def test_only_http_gateways_are_refused(self):
        document = default_document()
        document["gateway"]["instances"] = [g for g in document["gateway"]["instances"] if "http" in g]
        assert "at least one FIX gateway" in refusal(document)

    def test_a_gateway_section_without_instances_is_refused(self):
        document = default_document()
        document["gateway"]["instances"] = []
        assert "gateway.instances" in refusal(document)

    def test_a_missing_pipeline_section_is_named(self):
        document = default_document()
        del document["paths"]
        assert "paths: missing key" in refusal(document)

