// The trading page: REST (signed with WebCrypto) for actions and history, the pusher's WebSocket for
// everything live (docs/rest.md, docs/market-data.md). Money stays in decimal strings; the checks use
// integers (BigInt), never floats. Numbers become floats only to be drawn on the chart.
"use strict";

const state = {
  symbols: {}, symbol: null, interval: "1m", credentials: null, account: null,
  ws: null, wsBackoff: 250, book: null, trades: [], chart: null, series: null, info: null,
};
const $ = (id) => document.getElementById(id);

// --- decimals --------------------------------------------------------------------------------------------

const PLAIN = /^[0-9]+(\.[0-9]+)?$/;
function scaled(text, digits) {               // "12.5", 3 -> 12500n
  const [whole, fraction = ""] = text.split(".");
  if (fraction.length > digits) return null;
  return BigInt(whole + fraction.padEnd(digits, "0"));
}
function decimals(text) { return (text.split(".")[1] || "").length; }
function steps(text, step) {                  // how many steps: null if not a whole number of them
  const digits = Math.max(decimals(text), decimals(step));
  const value = scaled(text, digits), unit = scaled(step, digits);
  return value % unit === 0n ? value / unit : null;
}
function compare(a, b) {                       // a < b: -1, a == b: 0, a > b: 1
  const digits = Math.max(decimals(a), decimals(b));
  const x = scaled(a, digits), y = scaled(b, digits);
  return x < y ? -1 : x > y ? 1 : 0;
}
function product(a, b) {                       // exact a * b as a decimal string
  const digits = decimals(a) + decimals(b);
  const value = (scaled(a, decimals(a)) * scaled(b, decimals(b))).toString().padStart(digits + 1, "0");
  return digits ? value.slice(0, -digits) + "." + value.slice(-digits) : value;
}

// The same rules as the gateway's validation, with the same reason names.
function checkOrder(symbol, side, type, price, qty) {
  if (!PLAIN.test(qty)) return "INVALID_QUANTITY: the quantity must be a plain decimal, such as 0.01";
  if (compare(qty, "0") <= 0) return "INVALID_QUANTITY: the quantity must be above zero";
  if (steps(qty, symbol.lot_size) === null) return `INVALID_QUANTITY: a multiple of the lot ${symbol.lot_size}`;
  if (compare(qty, symbol.min_qty) < 0 || compare(qty, symbol.max_qty) > 0)
    return `INVALID_QUANTITY: between ${symbol.min_qty} and ${symbol.max_qty}`;
  if (type === "market") return null;
  if (!PLAIN.test(price)) return "the price must be a plain decimal, such as 65000.5";
  if (compare(price, "0") <= 0) return "the price must be above zero";
  if (steps(price, symbol.tick_size) === null)
    return `INVALID_PRICE_INCREMENT: a multiple of the tick ${symbol.tick_size}`;
  if (compare(price, symbol.price_min) < 0 || compare(price, symbol.price_max) > 0)
    return `PRICE_OUT_OF_BAND: between ${symbol.price_min} and ${symbol.price_max}`;
  if (compare(product(price, qty), symbol.min_notional) < 0)
    return `BELOW_MIN_NOTIONAL: price x quantity must be at least ${symbol.min_notional} ${symbol.quote}`;
  return null;
}

// --- REST --------------------------------------------------------------------------------------------------

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
const fromHex = (text) => new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));

async function hmacHex(secret, payload) {
  const key = await crypto.subtle.importKey("raw", fromHex(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(payload)));
}

let lastTimestamp = 0;
async function api(method, target, body, signed = false) {
  const text = body === undefined ? "" : JSON.stringify(body);
  const headers = { "Content-Type": "application/json" };
  if (signed) {
    if (!state.credentials) throw new Error("sign in first");
    // The server takes a signature once: two equal requests in one millisecond get distinct timestamps.
    const timestamp = lastTimestamp = Math.max(Date.now(), lastTimestamp + 1);
    headers["X-API-KEY"] = state.credentials.key;
    headers["X-API-TIMESTAMP"] = String(timestamp);
    headers["X-API-SIGNATURE"] = await hmacHex(state.credentials.secret, `${timestamp}|${method}|${target}|${text}`);
  }
  const response = await fetch(target, { method, headers, body: body === undefined ? undefined : text });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

// --- the chart ---------------------------------------------------------------------------------------------

function toCandle(bar) {
  return { time: bar.open_time / 1000, open: +bar.open, high: +bar.high, low: +bar.low, close: +bar.close };
}

function makeChart() {
  state.chart = LightweightCharts.createChart($("chart"), {
    layout: { background: { color: "#171c25" }, textColor: "#d8dee9" },
    grid: { vertLines: { color: "#222a36" }, horzLines: { color: "#222a36" } },
    timeScale: { timeVisible: true, secondsVisible: true }, autoSize: true,
  });
  state.series = state.chart.addSeries(LightweightCharts.CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false, wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  });
}

async function loadBars() {
  const answer = await api("GET", `/api/v1/bars?symbol=${state.symbol}&interval=${state.interval}&limit=500`);
  state.series.setData(answer.bars.map(toCandle));
  if (answer.bars.length) showBar(answer.bars[answer.bars.length - 1]);
}

function showBar(bar) {
  $("last-bar").textContent = `O ${bar.open} H ${bar.high} L ${bar.low} C ${bar.close} V ${bar.volume} (${bar.trades} trades)`;
  $("last-bar").dataset.close = bar.close;
  $("last-bar").dataset.trades = bar.trades;
}

// --- the book and trades -----------------------------------------------------------------------------------

function applyDepth(message) {
  const data = message.data;
  if (message.type === "snapshot") {
    state.book = { bids: new Map(data.bids), asks: new Map(data.asks), last: data.lastUpdateId };
  } else if (state.book) {
    if (data.u <= state.book.last) return;
    if (data.U !== state.book.last + 1 && !(data.U <= state.book.last + 1 && data.u >= state.book.last + 1)) {
      subscribe(`depth.${state.symbol}`, true);  // out of step: a new snapshot
      return;
    }
    for (const [side, levels] of [[state.book.bids, data.bids], [state.book.asks, data.asks]])
      for (const [price, qty] of levels) { if (compare(qty, "0") === 0) side.delete(price); else side.set(price, qty); }
    state.book.last = data.u;
  }
  renderBook();
}

function renderBook() {
  const byPrice = (a, b) => compare(a[0], b[0]);
  const asks = [...state.book.asks].sort(byPrice).slice(0, 12).reverse();
  const bids = [...state.book.bids].sort(byPrice).reverse().slice(0, 12);
  const rows = (levels) => levels.map(([p, q]) => `<tr data-price="${p}"><td>${p}</td><td>${q}</td></tr>`).join("");
  $("asks").innerHTML = rows(asks);
  $("bids").innerHTML = rows(bids);
}

function addTrades(trades) {
  state.trades = trades.slice().reverse().concat(state.trades).slice(0, 40);
  $("trades").innerHTML = state.trades.map((t) =>
    `<tr class="${t.side}" data-id="${t.id}"><td>${t.price}</td><td>${t.qty}</td><td>${new Date(t.time).toLocaleTimeString()}</td></tr>`).join("");
}

function showTicker(t) {
  $("ticker").innerHTML = t ? `last <b id="last-price">${t.last}</b> 24h <b>${t.change_pct}%</b> vol <b>${t.volume}</b>` : "";
}

// --- the pusher ---------------------------------------------------------------------------------------------

function send(request) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(request)); }
function subscribe(channel, again = false) {
  if (again) send({ op: "unsubscribe", channel });
  send({ op: "subscribe", channel });
}
function marketChannels() {
  return [`depth.${state.symbol}`, `trades.${state.symbol}`, `kline.${state.interval}.${state.symbol}`, `ticker.${state.symbol}`];
}

function connect() {
  const ws = new WebSocket(state.info.pusher);
  state.ws = ws;
  $("connection").dataset.state = "connecting";
  $("connection").textContent = "connecting";
  ws.onopen = async () => {
    state.wsBackoff = 250;
    $("connection").dataset.state = "open";
    $("connection").textContent = "live";
    marketChannels().forEach((c) => subscribe(c));
    if (state.credentials) await authenticate();
  };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = () => {
    $("connection").dataset.state = "closed";
    $("connection").textContent = "reconnecting";
    state.book = null;
    setTimeout(connect, state.wsBackoff);   // reconnects by itself, backing off to 5 s
    state.wsBackoff = Math.min(state.wsBackoff * 2, 5000);
  };
}

async function authenticate() {
  const ts = Date.now();
  const sig = await hmacHex(state.credentials.secret, `stream-auth|${ts}|${state.credentials.key}`);
  send({ op: "auth", key: state.credentials.key, ts, sig, id: "auth" });
}

function onMessage(m) {
  if (m.event === "authenticated") { ["orders", "fills", "balances"].forEach((c) => subscribe(c)); return; }
  if (m.event) return;
  const channel = m.channel;
  if (channel === `depth.${state.symbol}`) applyDepth(m);
  else if (channel === `trades.${state.symbol}`) addTrades(m.data.trades);
  else if (channel === `kline.${state.interval}.${state.symbol}`) { state.series.update(toCandle(m.data)); showBar(m.data); }
  else if (channel === `ticker.${state.symbol}`) showTicker(m.data);
  else if (channel === "balances") showBalances(m.data, m.type === "snapshot");
  else if (channel === "orders") loadOpenOrders();
  else if (channel === "fills") addFills(m.data || []);
}

// --- the account ---------------------------------------------------------------------------------------------

const balances = new Map();
function showBalances(rows, snapshot) {
  if (snapshot) balances.clear();
  for (const row of rows) balances.set(row.asset, row);
  $("balances").innerHTML = [...balances.values()].map((b) =>
    `<tr data-asset="${b.asset}"><td>${b.asset}</td><td class="available">${b.available}</td><td class="frozen">${b.frozen}</td></tr>`).join("");
}

let fills = [];
function addFills(list) {
  fills = list.slice().reverse().concat(fills).slice(0, 30);
  $("fills").innerHTML = fills.map((f) =>
    `<tr data-clordid="${f.clordid}"><td>${f.symbol}</td><td class="${f.side}">${f.side}</td><td>${f.price}</td><td>${f.qty}</td><td>${f.fee} ${f.fee_asset}</td><td>${f.liquidity}</td></tr>`).join("");
}

async function loadOpenOrders() {
  if (!state.credentials) return;
  let answer;
  try {
    answer = await api("GET", "/api/v1/orders", undefined, true);
  } catch (error) {
    $("form-error").textContent = `open orders: ${error.message}`;
    return;
  }
  $("open-orders").innerHTML = answer.orders.map((o) =>
    `<tr data-clordid="${o.clordid}"><td>${o.symbol}</td><td class="${o.side}">${o.side}</td><td>${o.price}</td><td>${o.qty}</td>
      <td>${o.filled}</td><td class="status">${o.status}</td>
      <td><button class="amend-button" data-clordid="${o.clordid}" data-price="${o.price}" data-qty="${o.qty}">Amend</button>
      <button class="cancel-button" data-clordid="${o.clordid}">Cancel</button></td></tr>`).join("");
}

$("open-orders").addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const clordid = button.dataset.clordid;
  try {
    if (button.classList.contains("cancel-button")) {
      await api("DELETE", `/api/v1/orders/${encodeURIComponent(clordid)}`, undefined, true);
    } else if (button.classList.contains("amend-button")) {
      const row = button.closest("tr");
      row.querySelector("td:last-child").innerHTML = `<span class="amend">
        <input class="amend-price" value="${button.dataset.price}"> <input class="amend-qty" value="${button.dataset.qty}">
        <button class="save-button" data-clordid="${clordid}">Save</button></span>`;
      return;
    } else if (button.classList.contains("save-button")) {
      const row = button.closest("tr");
      const [symbol] = [state.symbols[row.children[0].textContent]];
      const price = row.querySelector(".amend-price").value.trim(), qty = row.querySelector(".amend-qty").value.trim();
      const problem = checkOrder(symbol, row.children[1].textContent, "limit", price, qty);
      if (problem) { $("form-error").textContent = problem; return; }
      await api("PATCH", `/api/v1/orders/${encodeURIComponent(clordid)}`, { price, qty }, true);
    }
    $("form-error").textContent = "";
  } catch (error) {
    $("form-error").textContent = error.message;
  }
  loadOpenOrders();
});

$("order-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("form-error").textContent = "";
  $("form-result").textContent = "";
  const symbol = state.symbols[state.symbol];
  const side = document.querySelector('input[name="side"]:checked').value;
  const type = $("type").value, price = $("price").value.trim(), qty = $("qty").value.trim();
  const problem = checkOrder(symbol, side, type, price, qty);
  if (problem) { $("form-error").textContent = problem; return; }
  const order = { symbol: state.symbol, side, type, qty };
  if (type === "limit") order.price = price; else order.tif = "ioc";
  try {
    const placed = await api("POST", "/api/v1/orders", order, true);
    $("form-result").textContent = `${placed.status}: ${placed.side} ${placed.qty} ${placed.symbol} (${placed.clordid})`;
    loadOpenOrders();
  } catch (error) {
    $("form-error").textContent = error.message;
  }
});

$("type").addEventListener("change", () => { $("price").disabled = $("type").value === "market"; });

async function signIn(key, secret) {
  state.credentials = { key, secret };
  try {
    const answer = await api("GET", "/api/v1/account/balances", undefined, true);
    showBalances(answer.balances, true);
  } catch (error) {
    state.credentials = null;
    $("form-error").textContent = `sign in: ${error.message}`;
    return;
  }
  sessionStorage.setItem("credentials", JSON.stringify(state.credentials));
  $("signin").hidden = true;
  $("account").hidden = false;
  $("account-id").textContent = key;
  loadOpenOrders();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) authenticate();
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("key").value.trim(), $("secret").value.trim());
});
$("signout").addEventListener("click", () => { sessionStorage.removeItem("credentials"); location.reload(); });

// --- start ----------------------------------------------------------------------------------------------------

async function switchMarket() {
  state.book = null;
  state.trades = [];
  $("trades").innerHTML = "";
  await loadBars();
  const recent = await api("GET", `/api/v1/trades?symbol=${state.symbol}&limit=40`);
  addTrades(recent.trades);
  showTicker((await api("GET", `/api/v1/ticker?symbol=${state.symbol}`)).ticker);
}

$("symbol").addEventListener("change", async () => {
  marketChannels().forEach((c) => send({ op: "unsubscribe", channel: c }));
  state.symbol = $("symbol").value;
  await switchMarket();
  marketChannels().forEach((c) => subscribe(c));
});
$("interval").addEventListener("change", async () => {
  send({ op: "unsubscribe", channel: `kline.${state.interval}.${state.symbol}` });
  state.interval = $("interval").value;
  await loadBars();
  subscribe(`kline.${state.interval}.${state.symbol}`);
});

async function start() {
  state.info = await api("GET", "/api/v1/info");
  for (const symbol of (await api("GET", "/api/v1/symbols")).symbols) {
    state.symbols[symbol.symbol] = symbol;
    $("symbol").add(new Option(symbol.symbol, symbol.symbol));
  }
  state.symbol = $("symbol").value;
  makeChart();
  await switchMarket();
  connect();
  const saved = sessionStorage.getItem("credentials");
  if (saved) { const c = JSON.parse(saved); signIn(c.key, c.secret); }
}

start();
