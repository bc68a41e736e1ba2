"""The web UI in a real headless browser (Debian's chromium driven by Playwright) against the real exchange:
a trader signs in with an account's key, places an order through the page and sees it under open orders;
a second account crosses it through the FIX-like client; the page shows the fill, the new balances, the
trade and the updated candle. A failing test leaves a screenshot (its path is in the failure message)."""

from __future__ import annotations

import os
import shutil
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from client.sync import Client
from tests.harness import Exchange, poll

CHROMIUM = "/usr/bin/chromium"
# Chromium in a closed network: no background connections, no sandbox (the tests run as root).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "test-screenshots"


@pytest.fixture(scope="module")
def exchange():
    with Exchange() as running:
        yield running





@pytest.fixture
def page(request):
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.set_default_timeout(TIMEOUT_MS)
        yield tab
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / f"{request.node.name}.png"
            tab.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failure: {shot}")
        browser.close()
        assert not errors, f"errors in the page: {errors}"


def balance(page: Page, asset: str) -> Decimal:
    return Decimal(page.inner_text(f'#balances tr[data-asset="{asset}"] .available'))


def test_sign_in_place_see_it_open_then_a_fix_trader_fills_it(exchange, page):
    web_trader = exchange.open_account({"USDT": "100000"})
    fix_trader = exchange.open_account({"BTC": "1"})
    page.goto(exchange.http_url)
    page.wait_for_selector('#connection[data-state="open"]')

    page.fill("#key", web_trader.key_id)
    page.fill("#secret", web_trader.secret)
    page.click("#signin-button")
    page.wait_for_selector("#account:not([hidden])")
    page.wait_for_selector('#balances tr[data-asset="USDT"]')
    assert balance(page, "USDT") == Decimal("100000")

    # the page's own checks refuse what the server would, with the same reason
    page.fill("#price", "41000.05")
    page.fill("#qty", "0.002")
    page.click("#place")
    assert page.inner_text("#form-error").startswith("INVALID_PRICE_INCREMENT")

    page.fill("#price", "41000")
    page.click("#place")
    row = page.wait_for_selector("#open-orders tr")
    clordid = row.get_attribute("data-clordid")
    assert "41000" in row.inner_text() and "new" in row.inner_text()
    page.wait_for_function("document.querySelector('#balances tr[data-asset=\"USDT\"] .frozen').textContent !== '0'")

    with Client(exchange.fix_endpoint(), fix_trader.key_id, fix_trader.secret, timeout=20) as seller:
        seller.logon()
        seller.first_report(seller.sell("BTC-USDT", "0.002", "41000"))

    page.wait_for_selector(f'#fills tr[data-clordid="{clordid}"]')
    assert "maker" in page.inner_text(f'#fills tr[data-clordid="{clordid}"]')
    page.wait_for_function("!document.querySelector('#open-orders tr')")  # filled: no longer open
    page.wait_for_function("document.querySelector('#balances tr[data-asset=\"BTC\"] .available')"
                           ".textContent === '0.002'")
    # 100000 - 82 (0.002 x 41000) - 0.0164 maker fee (2 bps)
    poll(lambda: balance(page, "USDT") == Decimal("99917.9836"), timeout=10, what="the USDT balance")
    page.wait_for_selector('#trades tr td:text-is("41000")')
    page.wait_for_function("document.getElementById('last-bar').dataset.close === '41000'")
    assert int(page.get_attribute("#last-bar", "data-trades")) >= 1
    assert page.inner_text("#last-price") == "41000"


def test_cancel_and_amend_from_the_page(exchange, page):
    trader = exchange.open_account({"USDT": "100000"})
    page.goto(exchange.http_url)
    page.fill("#key", trader.key_id)
    page.fill("#secret", trader.secret)
    page.click("#signin-button")
    page.wait_for_selector("#account:not([hidden])")
    page.fill("#price", "20000")
    page.fill("#qty", "0.01")
    page.click("#place")
    page.wait_for_selector("#open-orders tr .amend-button")
    page.click("#open-orders tr .amend-button")
    page.fill("#open-orders .amend-price", "20000.5")
    page.click("#open-orders .save-button")
    page.wait_for_selector('#open-orders tr td:text-is("20000.5")')
    page.click("#open-orders tr .cancel-button")
    page.wait_for_function("!document.querySelector('#open-orders tr')")
    page.wait_for_function("document.querySelector('#balances tr[data-asset=\"USDT\"] .available')"
                           ".textContent === '100000'")


def test_the_page_reconnects_by_itself_when_the_pusher_restarts(exchange, page):
    seller = exchange.open_account({"BTC": "1"})
    buyer = exchange.open_account({"USDT": "100000"})
    page.goto(exchange.http_url)
    page.wait_for_selector('#connection[data-state="open"]')
    before = exchange.program_pid("pusher")
    os.kill(before, signal.SIGKILL)
    page.wait_for_selector('#connection[data-state="closed"]')
    poll(lambda: exchange.restarted("pusher", before), timeout=60, what="the pusher restarted")
    page.wait_for_selector('#connection[data-state="open"]', timeout=60_000)
    with Client(exchange.fix_endpoint(), seller.key_id, seller.secret, timeout=20) as ask_side, \
            Client(exchange.fix_endpoint(), buyer.key_id, buyer.secret, timeout=20) as bid_side:
        ask_side.logon()
        bid_side.logon()
        ask_side.first_report(ask_side.sell("BTC-USDT", "0.001", "43210"))
        bid_side.first_report(bid_side.buy("BTC-USDT", "0.001", "43210"))
    page.wait_for_selector('#trades tr td:text-is("43210")')  # live again, through the new connection
