"""The exchange's configuration: one TOML file, loaded once into typed, frozen objects.

Every process reads the same file. The file is found, in order: the path given to :func:`load_config`,
the path in the ``EXCHANGE_CONFIG`` environment variable, the default that ships in this package
(``common/default_config.toml``: BTC, ETH, USDT; BTC-USDT, ETH-USDT, ETH-BTC).

Nothing is guessed: an unknown key, a missing key or a bad value stops start-up with a
:class:`ConfigError` that names the key (``symbols[1].tick_size: ...``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from common.fixedpoint import INT64_MAX, FixedPointError, Step
from common.records import SelfTradePrevention

CONFIG_ENV_VAR = "EXCHANGE_CONFIG"
DEFAULT_CONFIG_RESOURCE = "default_config.toml"

# A symbol's price ladder is an array indexed by tick offset inside its band; this bounds its memory.
MAX_LEVELS_PER_SYMBOL = 1 << 24
MAX_ASSETS = 1 << 15
MAX_SYMBOLS = 1 << 15
MAX_FEE_BPS = 1000  # 10 %
BPS_DENOMINATOR = 10_000

_ASSET_NAME = re.compile(r"[A-Z0-9]{1,16}")
_SYMBOL_NAME = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")
_PROCESS_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_ENDPOINT = re.compile(r"tcp://[^\s:]+:\d{1,5}|ipc://\S+|inproc://\S+")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class AssetConfig:
    id: int
    name: str
    decimals: int
    # The asset's smallest unit, built once: a Step memoises what it parses and formats.
    unit: Step = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", Step.from_decimals(self.decimals))


@dataclass(frozen=True, slots=True)
class SymbolConfig:
    id: int
    name: str
    base: AssetConfig
    quote: AssetConfig
    tick: Step
    lot: Step
    # Derived integers, the only form the engine sees.
    base_units_per_lot: int  # lot size in the base asset's smallest units
    quote_units_per_tick_lot: int  # one tick times one lot, in the quote asset's smallest units
    min_price_ticks: int
    max_price_ticks: int
    min_qty_lots: int
    max_qty_lots: int
    min_notional_units: int  # quote units

    @property
    def levels(self) -> int:
        """Price levels in the band: the length of this symbol's price ladder."""
        return self.max_price_ticks - self.min_price_ticks + 1


@dataclass(frozen=True, slots=True)
class FeeConfig:
    maker_bps: int
    taker_bps: int
    fee_account: int

    @property
    def reserve_bps(self) -> int:
        """The fee rate a buy order reserves: the larger one, as it may end up maker or taker."""
        return max(self.maker_bps, self.taker_bps)


@dataclass(frozen=True, slots=True)
class CapacityConfig:
    max_open_orders: int
    max_accounts: int


@dataclass(frozen=True, slots=True)
class EngineConfig:
    self_trade_prevention: SelfTradePrevention
    event_buffer: int  # event records the engine's buffer holds before a batch is split
    reports: str  # PUB endpoint the engine binds: reports per gateway, market data, account events
    queries: str  # ROUTER endpoint the engine binds: order status, open orders, balances, resends
    recent_reports: int  # report messages kept per gateway topic, to answer a resend after a gap
    recent_market_messages: int  # market messages kept per symbol, for quotation to catch up after a gap
    snapshot_every_commands: int  # a snapshot after this many commands applied since the last one
    snapshot_every_s: int  # ... or after this many seconds, if any command was applied meanwhile
    snapshots_kept: int  # the newest this many snapshots are kept; older ones are dropped
    snapshot_map_bytes: int  # initial LMDB map size of the snapshot store (it grows when full)
    catch_up_reports: int  # at start-up, reports are published again for the journal's last this many commands
    pretouch: bool  # fault in every page of the engine's arrays before going live (see engine/layout.py)
    market_interval_us: int  # live market messages leave at most once per this many us (engine/pacing.py)


class Durability(str, Enum):
    """When the sequencer considers a batch journaled (it publishes only after that)."""

    PROCESS = "process"  # committed to LMDB in the OS page cache: survives any process crash
    FSYNC = "fsync"  # committed and flushed to disk: survives a power loss


@dataclass(frozen=True, slots=True)
class SequencerConfig:
    intake: str  # PULL endpoint the sequencer binds; every gateway PUSHes commands to it
    stream: str  # PUB endpoint the sequencer binds: sequenced batches, after they are journaled
    replay: str  # ROUTER endpoint the sequencer binds: ranges of the journal on request
    durability: Durability
    max_batch: int  # commands per batch (one LMDB transaction, one published message) at most
    heartbeat_ms: int  # when idle, the stream repeats the last sequence number this often
    journal_map_bytes: int  # initial LMDB map size of the journal
    journal_max_bytes: int  # the map never grows past this: new commands are then refused, not crashed on


@dataclass(frozen=True, slots=True)
class GatewayInstance:
    """A front door: FIX-like sessions over ZeroMQ (``fix``), or the REST API and web UI over HTTP
    (``http_host``, ``http_port``)."""

    id: int  # 1..65535, the `origin` of its commands and the topic of its reports
    name: str
    fix: str | None = None  # ROUTER endpoint for FIX-like clients
    http_host: str | None = None
    http_port: int | None = None

    @property
    def is_http(self) -> bool:
        return self.http_port is not None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    logon_window_ms: int  # how far a Logon's SendingTime may be from the gateway's clock
    heartbeat_s: int  # HeartBtInt the gateway asks for; a silent session is logged out after 2x
    max_message_bytes: int  # larger client frames are refused unread
    instances: tuple[GatewayInstance, ...]

    @property
    def fix_instances(self) -> tuple[GatewayInstance, ...]:
        return tuple(gateway for gateway in self.instances if not gateway.is_http)

    @property
    def http_instances(self) -> tuple[GatewayInstance, ...]:
        return tuple(gateway for gateway in self.instances if gateway.is_http)

    def instance(self, name: str) -> GatewayInstance:
        for gateway in self.instances:
            if gateway.name == name:
                return gateway
        raise KeyError(f"unknown gateway {name!r}")


@dataclass(frozen=True, slots=True)
class QuotationConfig:
    market: str  # PUB endpoint quotation binds: trades, depth, K-lines and tickers for the pusher
    queries: str  # ROUTER endpoint quotation binds: bars, recent trades, depth snapshots, tickers
    recent_trades: int  # trades kept per symbol for history queries and for subscribers catching up
    second_bars_kept_s: int  # 1s bars older than this are dropped (the longer intervals are all kept)
    store_map_bytes: int  # initial LMDB map size of the quotation store (it grows when full)


@dataclass(frozen=True, slots=True)
class PusherConfig:
    host: str  # the WebSocket server's listening address
    port: int
    max_connections: int  # connections beyond this are refused at the handshake
    max_subscriptions: int  # channels one connection may subscribe to
    send_buffer_bytes: int  # bytes waiting for one slow connection before it is disconnected
    ping_interval_s: int  # a ping this often; a connection that does not answer in ping_timeout_s is closed
    ping_timeout_s: int
    auth_window_ms: int  # how far an auth request's timestamp may be from the pusher's clock


@dataclass(frozen=True, slots=True)
class PathsConfig:
    data_dir: Path  # journal, credentials (relative paths are relative to the working directory)
    log_dir: Path

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def credentials_dir(self) -> Path:
        return self.data_dir / "credentials"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def quotation_dir(self) -> Path:
        return self.data_dir / "quotation"


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    assets: tuple[AssetConfig, ...]
    symbols: tuple[SymbolConfig, ...]
    fees: FeeConfig
    capacity: CapacityConfig
    engine: EngineConfig
    sequencer: SequencerConfig
    gateway: GatewayConfig
    quotation: QuotationConfig
    pusher: PusherConfig
    paths: PathsConfig
    source: str = "<memory>"

    def asset(self, name: str) -> AssetConfig:
        for asset in self.assets:
            if asset.name == name:
                return asset
        raise KeyError(f"unknown asset {name!r}")

    def symbol(self, name: str) -> SymbolConfig:
        for symbol in self.symbols:
            if symbol.name == name:
                return symbol
        raise KeyError(f"unknown symbol {name!r}")


# --- loading ------------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None) -> ExchangeConfig:
    """Load the configuration from ``path``, else ``$EXCHANGE_CONFIG``, else the packaged default."""
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR) or None
    if path is None:
        text = resources.files("common").joinpath(DEFAULT_CONFIG_RESOURCE).read_text(encoding="utf-8")
        source = f"<default {DEFAULT_CONFIG_RESOURCE}>"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: not UTF-8 text ({exc.reason})") from None
        source = str(path)
    return parse_config_text(text, source=source)


def parse_config_text(text: str, *, source: str = "<memory>") -> ExchangeConfig:
    try:
        # Floats become Decimal so that `tick_size = 0.01` means exactly one hundredth.
        document = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse_config(document, source=source)


def parse_config(document: Mapping[str, Any], *, source: str = "<memory>") -> ExchangeConfig:
    """Build the typed configuration from a parsed TOML document (a plain mapping)."""
    reader = _Section(document, "", source)
    fees_section = reader.section("fees")
    capacity_section = reader.section("capacity")
    engine_section = reader.section("engine")
    sequencer_section = reader.section("sequencer")
    gateway_section = reader.section("gateway")
    quotation_section = reader.section("quotation")
    pusher_section = reader.section("pusher")
    paths_section = reader.section("paths")
    asset_tables = reader.table_list("assets")
    symbol_tables = reader.table_list("symbols")
    reader.finish()

    fees = FeeConfig(
        maker_bps=fees_section.integer("maker_bps", minimum=0, maximum=MAX_FEE_BPS),
        taker_bps=fees_section.integer("taker_bps", minimum=0, maximum=MAX_FEE_BPS),
        fee_account=fees_section.integer("fee_account", minimum=0),
    )
    fees_section.finish()

    capacity = CapacityConfig(
        max_open_orders=capacity_section.integer("max_open_orders", minimum=1, maximum=(1 << 31) - 2),
        max_accounts=capacity_section.integer("max_accounts", minimum=1, maximum=(1 << 31) - 2),
    )
    capacity_section.finish()
    if fees.fee_account >= capacity.max_accounts:
        raise ConfigError(f"{source}: fees.fee_account: {fees.fee_account} is not below capacity.max_accounts")

    stp_name = engine_section.string("self_trade_prevention")
    try:
        stp = SelfTradePrevention[stp_name.upper()]
    except KeyError:
        choices = ", ".join(mode.name.lower() for mode in SelfTradePrevention)
        raise ConfigError(
            f"{source}: engine.self_trade_prevention: {stp_name!r} is not one of {choices}"
        ) from None
    engine = EngineConfig(
        self_trade_prevention=stp,
        event_buffer=engine_section.integer("event_buffer", minimum=64, maximum=1 << 26),
        reports=engine_section.endpoint("reports"),
        queries=engine_section.endpoint("queries"),
        recent_reports=engine_section.integer("recent_reports", minimum=16, maximum=1 << 24),
        recent_market_messages=engine_section.integer("recent_market_messages", minimum=16, maximum=1 << 24),
        snapshot_every_commands=engine_section.integer("snapshot_every_commands", minimum=1, maximum=1 << 40),
        snapshot_every_s=engine_section.integer("snapshot_every_s", minimum=1, maximum=86_400 * 7),
        snapshots_kept=engine_section.integer("snapshots_kept", minimum=2, maximum=1000),
        snapshot_map_bytes=engine_section.integer("snapshot_map_bytes", minimum=1 << 20, maximum=1 << 44),
        catch_up_reports=engine_section.integer("catch_up_reports", minimum=0, maximum=1 << 40),
        pretouch=engine_section.boolean("pretouch"),
        market_interval_us=engine_section.integer("market_interval_us", minimum=0, maximum=10_000_000),
    )
    engine_section.finish()

    durability_name = sequencer_section.string("durability")
    try:
        durability = Durability(durability_name)
    except ValueError:
        choices = ", ".join(d.value for d in Durability)
        raise ConfigError(f"{source}: sequencer.durability: {durability_name!r} is not one of {choices}") from None
    sequencer = SequencerConfig(
        intake=sequencer_section.endpoint("intake"),
        stream=sequencer_section.endpoint("stream"),
        replay=sequencer_section.endpoint("replay"),
        durability=durability,
        max_batch=sequencer_section.integer("max_batch", minimum=1, maximum=1 << 20),
        heartbeat_ms=sequencer_section.integer("heartbeat_ms", minimum=10, maximum=60_000),
        journal_map_bytes=sequencer_section.integer("journal_map_bytes", minimum=1 << 20, maximum=1 << 44),
        journal_max_bytes=sequencer_section.integer("journal_max_bytes", minimum=1 << 20, maximum=1 << 50),
    )
    if sequencer.journal_max_bytes < sequencer.journal_map_bytes:
        sequencer_section.fail("journal_max_bytes", "must be at least journal_map_bytes")
    sequencer_section.finish()

    instances = []
    for table in gateway_section.table_list("instances"):
        gateway_id = table.integer("id", minimum=1, maximum=65535)
        name = table.string("name", pattern=_PROCESS_NAME, pattern_text="1-32 of a-z, 0-9 and '-'")
        if ("fix" in table.mapping) == ("http" in table.mapping):
            table.fail("fix", "a gateway has either fix (a ZeroMQ endpoint) or http (host:port)")
        if "fix" in table.mapping:
            instance = GatewayInstance(id=gateway_id, name=name, fix=table.endpoint("fix"))
        else:
            host, port = table.host_port("http")
            instance = GatewayInstance(id=gateway_id, name=name, http_host=host, http_port=port)
        if any(g.id == instance.id or g.name == instance.name for g in instances):
            table.fail("id", f"gateway {instance.name!r} (id {instance.id}) is listed twice")
        instances.append(instance)
        table.finish()
    if not any(not gateway.is_http for gateway in instances):
        gateway_section.fail("instances", "at least one FIX gateway is required")
    gateway = GatewayConfig(
        logon_window_ms=gateway_section.integer("logon_window_ms", minimum=100, maximum=3_600_000),
        heartbeat_s=gateway_section.integer("heartbeat_s", minimum=1, maximum=3600),
        max_message_bytes=gateway_section.integer("max_message_bytes", minimum=256, maximum=1 << 20),
        instances=tuple(instances),
    )
    gateway_section.finish()

    quotation = QuotationConfig(
        market=quotation_section.endpoint("market"),
        queries=quotation_section.endpoint("queries"),
        recent_trades=quotation_section.integer("recent_trades", minimum=100, maximum=1 << 24),
        second_bars_kept_s=quotation_section.integer("second_bars_kept_s", minimum=60, maximum=86_400 * 366),
        store_map_bytes=quotation_section.integer("store_map_bytes", minimum=1 << 20, maximum=1 << 44),
    )
    quotation_section.finish()

    pusher = PusherConfig(
        host=pusher_section.string("host", pattern=_HOST, pattern_text="a host name or IP address"),
        port=pusher_section.integer("port", minimum=1, maximum=65535),
        max_connections=pusher_section.integer("max_connections", minimum=1, maximum=1_000_000),
        max_subscriptions=pusher_section.integer("max_subscriptions", minimum=1, maximum=10_000),
        send_buffer_bytes=pusher_section.integer("send_buffer_bytes", minimum=1 << 12, maximum=1 << 30),
        ping_interval_s=pusher_section.integer("ping_interval_s", minimum=1, maximum=3600),
        ping_timeout_s=pusher_section.integer("ping_timeout_s", minimum=1, maximum=3600),
        auth_window_ms=pusher_section.integer("auth_window_ms", minimum=100, maximum=3_600_000),
    )
    pusher_section.finish()

    paths = PathsConfig(data_dir=paths_section.filesystem_path("data_dir"),
                        log_dir=paths_section.filesystem_path("log_dir"))
    paths_section.finish()

    if not asset_tables:
        raise ConfigError(f"{source}: assets: at least one asset is required")
    if len(asset_tables) > MAX_ASSETS:
        raise ConfigError(f"{source}: assets: at most {MAX_ASSETS} assets")
    assets: list[AssetConfig] = []
    for index, table in enumerate(asset_tables):
        name = table.string("name", pattern=_ASSET_NAME, pattern_text="1-16 of A-Z and 0-9")
        if any(a.name == name for a in assets):
            raise ConfigError(f"{source}: {table.path}name: asset {name!r} is listed twice")
        assets.append(AssetConfig(id=index, name=name, decimals=table.integer("decimals", minimum=0, maximum=18)))
        table.finish()
    assets_by_name = {a.name: a for a in assets}

    if len(symbol_tables) > MAX_SYMBOLS:
        raise ConfigError(f"{source}: symbols: at most {MAX_SYMBOLS} symbols")
    symbols: list[SymbolConfig] = []
    for index, table in enumerate(symbol_tables):
        symbols.append(_parse_symbol(index, table, assets_by_name, fees, symbols))
        table.finish()

    return ExchangeConfig(
        assets=tuple(assets),
        symbols=tuple(symbols),
        fees=fees,
        capacity=capacity,
        engine=engine,
        sequencer=sequencer,
        gateway=gateway,
        quotation=quotation,
        pusher=pusher,
        paths=paths,
        source=source,
    )


def _parse_symbol(
    index: int,
    table: "_Section",
    assets_by_name: Mapping[str, AssetConfig],
    fees: FeeConfig,
    earlier: list[SymbolConfig],
) -> SymbolConfig:
    name = table.string("name", pattern=_SYMBOL_NAME, pattern_text="1-32 of A-Z, 0-9, '_' and '-'")
    if any(s.name == name for s in earlier):
        table.fail("name", f"symbol {name!r} is listed twice")
    base = table.asset("base", assets_by_name)
    quote = table.asset("quote", assets_by_name)
    if base is quote:
        table.fail("quote", "base and quote must be different assets")
    tick = table.step("tick_size")
    lot = table.step("lot_size")

    base_units_per_lot = table.whole_steps("lot_size", lot.mantissa, lot.exponent, base.unit, base.name)
    quote_per_tick_lot = table.whole_steps(
        "tick_size",
        tick.mantissa * lot.mantissa,
        tick.exponent + lot.exponent,
        quote.unit,
        f"{quote.name} per lot (tick_size x lot_size)",
    )

    min_price = table.count("price_min", tick)
    max_price = table.count("price_max", tick)
    if max_price < min_price:
        table.fail("price_max", "must not be below price_min")
    levels = max_price - min_price + 1
    if levels > MAX_LEVELS_PER_SYMBOL:
        table.fail("price_max", f"the band holds {levels} ticks; at most {MAX_LEVELS_PER_SYMBOL} are allowed")
    min_qty = table.count("min_qty", lot)
    max_qty = table.count("max_qty", lot)
    if max_qty < min_qty:
        table.fail("max_qty", "must not be below min_qty")
    min_notional = table.count("min_notional", quote.unit, allow_zero=True)

    # The engine multiplies price x quantity x units per tick-lot, then adds the largest fee: that must
    # stay inside int64 for every order the band and quantity limits admit.
    max_notional = max_price * max_qty * quote_per_tick_lot
    worst_reserve = max_notional + max_notional * fees.reserve_bps // BPS_DENOMINATOR
    if worst_reserve > INT64_MAX:
        table.fail("max_qty", "price_max x max_qty (plus fees) overflows a 64-bit quote amount")

    return SymbolConfig(
        id=index,
        name=name,
        base=base,
        quote=quote,
        tick=tick,
        lot=lot,
        base_units_per_lot=base_units_per_lot,
        quote_units_per_tick_lot=quote_per_tick_lot,
        min_price_ticks=min_price,
        max_price_ticks=max_price,
        min_qty_lots=min_qty,
        max_qty_lots=max_qty,
        min_notional_units=min_notional,
    )


class _Section:
    """One table of the TOML document: typed getters that name the key on failure, and that track
    which keys were read so that :meth:`finish` refuses the ones nobody asked for."""

    def __init__(self, mapping: Any, path: str, source: str):
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{source}: {path.rstrip('.') or 'document'}: must be a table")
        self.mapping = mapping
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.source}: {self.path}{key}: {message}")

    def _get(self, key: str) -> Any:
        self.used.add(key)
        if key not in self.mapping:
            self.fail(key, "missing key")
        return self.mapping[key]

    def finish(self) -> None:
        unknown = sorted(set(self.mapping) - self.used)
        if unknown:
            self.fail(unknown[0], "unknown key")

    def section(self, key: str) -> "_Section":
        value = self._get(key)
        if not isinstance(value, Mapping):
            self.fail(key, "must be a table")
        return _Section(value, f"{self.path}{key}.", self.source)

    def table_list(self, key: str) -> list["_Section"]:
        value = self._get(key)
        if not isinstance(value, list):
            self.fail(key, "must be an array of tables ([[...]])")
        return [_Section(item, f"{self.path}{key}[{i}].", self.source) for i, item in enumerate(value)]

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            self.fail(key, f"{value} is above the maximum {maximum}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def string(self, key: str, *, pattern: re.Pattern[str] | None = None, pattern_text: str = "") -> str:
        value = self._get(key)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"{value!r} must be {pattern_text}")
        return value

    def endpoint(self, key: str) -> str:
        value = self.string(key)
        if not _ENDPOINT.fullmatch(value):
            self.fail(key, f"{value!r} is not a ZeroMQ endpoint (tcp://host:port, ipc://path or inproc://name)")
        return value

    def host_port(self, key: str) -> tuple[str, int]:
        value = self.string(key)
        host, _, port = value.rpartition(":")
        if not _HOST.fullmatch(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            self.fail(key, f"{value!r} is not host:port")
        return host, int(port)

    def filesystem_path(self, key: str) -> Path:
        value = self.string(key)
        if not value or "\0" in value:
            self.fail(key, "must be a non-empty path")
        return Path(value)

    def asset(self, key: str, assets_by_name: Mapping[str, AssetConfig]) -> AssetConfig:
        name = self.string(key)
        if name not in assets_by_name:
            self.fail(key, f"unknown asset {name!r}")
        return assets_by_name[name]

    def _decimal_text(self, key: str) -> str:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            self.fail(key, f"must be a decimal number (a string such as \"0.01\"), got {value!r}")
        if isinstance(value, Decimal):
            if not value.is_finite():
                self.fail(key, f"must be finite, got {value}")
            return format(value, "f")
        return str(value)

    def step(self, key: str) -> Step:
        text = self._decimal_text(key)
        try:
            return Step.parse(text, what=key)
        except FixedPointError as exc:
            self.fail(key, str(exc))
        raise AssertionError("unreachable")

    def count(self, key: str, step: Step, *, allow_zero: bool = False) -> int:
        text = self._decimal_text(key)
        try:
            return step.count(text, what=key, allow_zero=allow_zero)
        except FixedPointError as exc:
            self.fail(key, str(exc))
        raise AssertionError("unreachable")

    def whole_steps(self, key: str, mantissa: int, exponent: int, unit: Step, unit_name: str) -> int:
        """``mantissa * 10**-exponent`` as a whole number of ``unit``s, refused if fractional."""
        numerator = mantissa * 10 ** max(unit.exponent - exponent, 0)
        denominator = unit.mantissa * 10 ** max(exponent - unit.exponent, 0)
        whole, remainder = divmod(numerator, denominator)
        if remainder or whole == 0:
            self.fail(key, f"must be a whole number of the smallest unit of {unit_name}")
        return whole


def default_document() -> dict[str, Any]:
    """The packaged default configuration as a plain (mutable, freshly parsed) TOML document: a base
    that tests and benchmarks change a few sections of, instead of repeating every key."""
    text = resources.files("common").joinpath(DEFAULT_CONFIG_RESOURCE).read_text(encoding="utf-8")
    return tomllib.loads(text, parse_float=Decimal)


def default_config() -> ExchangeConfig:
    """The configuration that ships with the package (ignores ``$EXCHANGE_CONFIG``)."""
    text = resources.files("common").joinpath(DEFAULT_CONFIG_RESOURCE).read_text(encoding="utf-8")
    return parse_config_text(text, source=f"<default {DEFAULT_CONFIG_RESOURCE}>")
