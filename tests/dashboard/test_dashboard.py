"""The dashboard in a real headless Chromium: it loads on both stores, shows queues and their
counts, retries a dead job, clears the cache by pattern, offers only what a key may do, logs no
console errors, and leaves screenshots at 1280 and 390 px wide in target/."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional

from conftest import ADMIN_KEY, CACHE_KEY, QREAD_KEY, TARGET, Browser, Server
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

WAIT_S = 15.0


def until(what: str, fn: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Polls fn until it returns something truthy (the page redraws every 2 s: stale elements retry)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (StaleElementReferenceException, WebDriverException) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def text(b: Browser, css: str) -> str:
    return str(b.driver.find_element(By.CSS_SELECTOR, css).text)


def open_page(b: Browser, server: Server, key: Optional[str] = None, hash_: str = "") -> None:
    b.driver.get(server.url + "/" + hash_)
    if key:
        until("the key prompt", lambda: "key" in text(b, "#live"))
        b.driver.find_element(By.ID, "key").send_keys(key)
        b.driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    until("the live stream", lambda: text(b, "#live") == "live")


def click(b: Browser, css: str) -> None:
    until(css, lambda: b.driver.find_element(By.CSS_SELECTOR, css).click() or True)


def confirm(b: Browser) -> None:
    until("the confirmation", lambda: b.driver.find_element(By.ID, "confirm").get_attribute("open") is not None)
    b.driver.find_element(By.ID, "confirm-ok").click()


def queue_counts(b: Browser, name: str) -> dict:
    row = b.driver.find_element(By.CSS_SELECTOR, f'tr[data-queue="{name}"]')
    return {td.get_attribute("data-count"): td.text for td in row.find_elements(By.CSS_SELECTOR, "td[data-count]")}


def test_loads_on_the_embedded_store_without_a_key(browser: Browser, embedded: Server) -> None:
    open_page(browser, embedded)
    until("mode embedded", lambda: text(browser, "#mode") == "embedded")
    until("the overview", lambda: "Uptime" in text(browser, "main") and "Traffic" in text(browser, "main"))
    assert "no key needed" in text(browser, "#who")
    # The live charts are SVG drawn by the page.
    until("charts", lambda: len(browser.driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 3)
    # Every section renders.
    for view in ("queues", "cache", "ratelimits", "more", "overview"):
        click(browser, f'nav a[data-view="{view}"]')
        until(view, lambda: browser.driver.find_element(By.CSS_SELECTOR, f'nav a[data-view="{view}"]').get_attribute("aria-current") == "page")
        until(view + " content", lambda: text(browser, "main") and "Waiting for the first" not in text(browser, "main"))
    # The page itself is served with its Content-Security-Policy (checked by fetching it).
    csp = browser.driver.execute_script("return fetch('/').then(r => r.headers.get('content-security-policy'))")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_loads_on_redis_with_a_typed_key_kept_in_session_storage(browser: Browser, keyed: Server) -> None:
    open_page(browser, keyed, ADMIN_KEY)
    until("mode redis", lambda: text(browser, "#mode") == "redis")
    until("Redis facts", lambda: "Eviction" in text(browser, "main"))
    assert "admin" in text(browser, "#who")
    stored = browser.driver.execute_script("return [sessionStorage.getItem('redkit-key'), localStorage.length]")
    assert stored == [ADMIN_KEY, 0]
    # A reload keeps the key for this tab.
    browser.driver.refresh()
    until("live after reload", lambda: text(browser, "#live") == "live")


def test_a_queue_created_over_the_api_appears_with_its_counts(browser: Browser, keyed: Server) -> None:
    api = keyed.api(ADMIN_KEY)
    q = "emails-" + uuid.uuid4().hex[:8]
    for i in range(3):
        api.call("POST", f"/v1/queues/{q}/jobs", {"payload": {"to": f"u{i}@example.com"}})
    api.call("POST", f"/v1/queues/{q}/jobs", {"payload": {"later": True}, "delay_ms": 600000})
    api.call("POST", f"/v1/queues/{q}/fetch", {"worker": "w1", "max": 1})
    open_page(browser, keyed, ADMIN_KEY, "#queues")
    counts = until("the queue's row", lambda: queue_counts(browser, q))
    assert counts == {"waiting": "2", "active": "1", "delayed": "1", "completed": "0", "dead": "0"}
    # Its page lists the waiting jobs and the active one with its worker.
    click(browser, f'tr[data-queue="{q}"] a')
    until("waiting jobs", lambda: len(browser.driver.find_elements(By.CSS_SELECTOR, "tr[data-job]")) == 2)
    click(browser, 'button[data-state="active"]')
    until("the active job", lambda: len(browser.driver.find_elements(By.CSS_SELECTOR, "tr[data-job]")) == 1)
    click(browser, "tr[data-job] a")
    until("job detail", lambda: "w1" in text(browser, "main") and "Lease" in text(browser, "main"))
    # Pause and resume from the page.
    click(browser, f'a[href="#queue/{q}"]')
    click(browser, 'button[data-action="pause"]')
    until("paused", lambda: api.call("GET", f"/v1/queues/{q}")["paused"])
    click(browser, 'button[data-action="resume"]')
    until("resumed", lambda: not api.call("GET", f"/v1/queues/{q}")["paused"])


def test_a_dead_job_is_retried_from_the_page(browser: Browser, keyed: Server) -> None:
    api = keyed.api(ADMIN_KEY)
    q = "billing-" + uuid.uuid4().hex[:8]
    job = api.call("POST", f"/v1/queues/{q}/jobs", {"payload": {"invoice": 42}, "max_attempts": 1})["id"]
    leased = api.call("POST", f"/v1/queues/{q}/fetch", {"worker": "w-dead"})["jobs"][0]
    api.call("POST", f"/v1/queues/{q}/jobs/{job}/fail", {"token": leased["token"], "error": "card declined"})
    assert api.call("GET", f"/v1/queues/{q}")["dead"] == 1
    open_page(browser, keyed, ADMIN_KEY, f"#queue/{q}")
    click(browser, 'button[data-state="dead"]')
    until("the dead job", lambda: browser.driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job}"]'))
    until("its error and attempts", lambda: "card declined" in text(browser, f'tr[data-job="{job}"]') and "1/1" in text(browser, f'tr[data-job="{job}"]'))
    click(browser, f'tr[data-job="{job}"] button[data-action="retry"]')
    until("the job retried", lambda: api.call("GET", f"/v1/queues/{q}")["dead"] == 0)
    assert api.call("GET", f"/v1/queues/{q}/jobs/{job}")["state"] == "waiting"
    until("the notice", lambda: "retried" in text(browser, "#notice"))
    # Purge-all asks first; cancelling leaves the dead list alone.
    job2 = api.call("POST", f"/v1/queues/{q}/jobs", {"payload": {"invoice": 43}, "max_attempts": 1})["id"]
    for j in api.call("POST", f"/v1/queues/{q}/fetch", {"worker": "w", "max": 10})["jobs"]:
        api.call("POST", f"/v1/queues/{q}/jobs/{j['id']}/fail", {"token": j["token"], "error": "again"})
    assert api.call("GET", f"/v1/queues/{q}")["dead"] >= 1
    click(browser, 'button[data-action="purge-all"]')
    until("the confirmation", lambda: browser.driver.find_element(By.ID, "confirm").get_attribute("open") is not None)
    browser.driver.find_element(By.ID, "confirm-cancel").click()
    assert api.call("GET", f"/v1/queues/{q}")["dead"] >= 1
    click(browser, 'button[data-action="purge-all"]')
    confirm(browser)
    until("dead purged", lambda: api.call("GET", f"/v1/queues/{q}")["dead"] == 0)
    assert job2


def test_a_cache_clear_by_pattern_removes_exactly_the_matching_keys(browser: Browser, keyed: Server) -> None:
    api = keyed.api(ADMIN_KEY)
    ns = "users" + uuid.uuid4().hex[:6]
    names = ["user:1", "user:2", "user:30", "admin:1", "user-x", "xuser:1"]
    for k in names:
        api.call("PUT", f"/v1/cache/{ns}/{k}?ttl_s=600", {"k": k})
    open_page(browser, keyed, ADMIN_KEY, "#cache")
    ns_in = until("the key browser", lambda: browser.driver.find_element(By.ID, "keys-ns"))
    ns_in.clear()
    ns_in.send_keys(ns)
    click(browser, "#keys-list")
    until("six keys listed", lambda: len(browser.driver.find_elements(By.CSS_SELECTOR, "tr[data-key]")) == 6)
    until("its TTL (10 min)", lambda: "min" in text(browser, 'tr[data-key="user:1"]'))
    until("the clear form on that namespace", lambda: browser.driver.find_element(By.ID, "clear-ns").get_attribute("value") == ns)
    browser.driver.find_element(By.ID, "clear-what").send_keys("user:*")
    click(browser, "#clear-submit")
    confirm(browser)
    until("the removal notice", lambda: "3 entries removed" in text(browser, "#notice"))
    left = sorted(api.call("GET", f"/v1/cache/keys?ns={ns}&limit=100")["keys"])
    assert left == ["admin:1", "user-x", "xuser:1"]
    until("the listing redrawn", lambda: len(browser.driver.find_elements(By.CSS_SELECTOR, "tr[data-key]")) == 3)


def test_a_key_without_queue_scope_sees_no_queue_actions(make_browser: Any, keyed: Server) -> None:
    api = keyed.api(ADMIN_KEY)
    q = "scoped-" + uuid.uuid4().hex[:8]
    job = api.call("POST", f"/v1/queues/{q}/jobs", {"payload": {}, "max_attempts": 1})["id"]
    leased = api.call("POST", f"/v1/queues/{q}/fetch", {"worker": "w"})["jobs"][0]
    api.call("POST", f"/v1/queues/{q}/jobs/{job}/fail", {"token": leased["token"], "error": "x"})

    # A cache-only key: no queue is listed and nothing to act on.
    b = make_browser()
    open_page(b, keyed, CACHE_KEY, "#queues")
    until("the refusal", lambda: "may not read any queue" in text(b, "main"))
    assert not b.driver.find_elements(By.CSS_SELECTOR, "[data-action]")
    assert not b.driver.find_elements(By.CSS_SELECTOR, "tr[data-queue]")
    # Its cache view still offers the clear form (it has cache admin).
    click(b, 'nav a[data-view="cache"]')
    until("the clear form", lambda: b.driver.find_element(By.ID, "clear-form"))

    # A queue reader sees the queue and its dead job but no pause, retry or purge.
    b2 = make_browser()
    open_page(b2, keyed, QREAD_KEY, f"#queue/{q}")
    click(b2, 'button[data-state="dead"]')
    until("the dead job", lambda: b2.driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job}"]'))
    assert not b2.driver.find_elements(By.CSS_SELECTOR, "[data-action]")
    # And no cache or rate-limit forms.
    click(b2, 'nav a[data-view="cache"]')
    until("the refusal", lambda: "may not read any cache" in text(b2, "main"))
    assert not b2.driver.find_elements(By.ID, "clear-form")


def test_screenshots_at_1280_and_390_px(make_browser: Any, keyed: Server) -> None:
    api = keyed.api(ADMIN_KEY)
    # Something to look at: traffic, a few queues, a policy, a cache namespace.
    for name, n in (("emails", 5), ("reports", 2), ("webhooks", 9)):
        for i in range(n):
            api.call("POST", f"/v1/queues/{name}/jobs", {"payload": {"n": i}})
    api.call("PUT", "/v1/ratelimit/policies/api", {"limit": 100, "period_ms": 60000})
    for i in range(20):
        api.call("PUT", f"/v1/cache/products/p{i}?ttl_s=300", {"i": i})
        api.call("GET", f"/v1/cache/products/p{i}")
    for width, height in ((1280, 1400), (390, 844)):
        b = make_browser(width, height)
        open_page(b, keyed, ADMIN_KEY)
        until("charts", lambda: len(b.driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline")) >= 3)
        # Nothing is wider than the window (usable at phone width): tables scroll inside their box.
        wide = b.driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= width, f"page is {wide} px wide at {width}"
        b.driver.save_screenshot(str(TARGET / f"dashboard-{width}.png"))
        click(b, 'nav a[data-view="queues"]')
        until("queues", lambda: b.driver.find_elements(By.CSS_SELECTOR, 'tr[data-queue="webhooks"]'))
        wide = b.driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= width, f"queues page is {wide} px wide at {width}"
        b.driver.save_screenshot(str(TARGET / f"dashboard-queues-{width}.png"))


def test_a_policy_is_defined_and_changed_from_the_page(browser: Browser, keyed: Server) -> None:
    api = keyed.api(ADMIN_KEY)
    name = "signup-" + uuid.uuid4().hex[:6]
    open_page(browser, keyed, ADMIN_KEY, "#ratelimits")
    until("the policy form", lambda: browser.driver.find_element(By.ID, "pol-name")).send_keys(name)
    limit = browser.driver.find_element(By.ID, "pol-limit")
    limit.clear()
    limit.send_keys("7")
    click(browser, "#pol-submit")
    until("the policy defined", lambda: name in {p["name"] for p in api.call("GET", "/v1/ratelimit/policies")})
    assert api.call("GET", f"/v1/ratelimit/policies/{name}")["policy"]["limit"] == 7
    # Edit fills the form from the row; a new limit is saved over the old.
    click(browser, f'tr[data-policy="{name}"] button[data-action="edit"]')
    until("the form filled", lambda: browser.driver.find_element(By.ID, "pol-name").get_attribute("value") == name)
    limit = browser.driver.find_element(By.ID, "pol-limit")
    limit.clear()
    limit.send_keys("9")
    click(browser, "#pol-submit")
    until("the policy changed", lambda: api.call("GET", f"/v1/ratelimit/policies/{name}")["policy"]["limit"] == 9)
