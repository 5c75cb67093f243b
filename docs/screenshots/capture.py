"""Capture the README screenshots of the steward workspace from a running hub.

    make demo   # in another terminal: the demo data, served at http://127.0.0.1:8000
    python docs/screenshots/capture.py [--url http://127.0.0.1:8000] [--user steward]

Drives Debian's chromium through Playwright (never ``playwright install``).  Saves
dashboard.png, queue.png, pair.png, golden.png, quarantine.png, quality.png and
match-model.png next to this file, and relationships.png with ``--related ID`` (a golden
record in a hierarchy, e.g. an ERP account with a parent).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="steward")
    parser.add_argument("--password", default="aurum-demo")
    parser.add_argument("--golden", type=int, help="the golden record to show (else the pair's)")
    parser.add_argument("--related", type=int, help="a golden record in a hierarchy")
    args = parser.parse_args()
    executable = shutil.which("chromium")
    if not executable:
        raise SystemExit("needs Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        page = browser.new_page(base_url=args.url, viewport={"width": 1360, "height": 900})
        page.goto("/accounts/login/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_url("**/steward/")

        def shot(name: str) -> None:
            page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)
            print(f"{name}.png  {page.url}")

        shot("dashboard")
        page.goto("/steward/queue/matches/")
        shot("queue")
        page.click("a.open-task >> nth=0")
        page.wait_for_selector("#compare")
        shot("pair")
        golden = (
            f"/steward/golden/{args.golden}/"
            if args.golden
            else page.locator(".golden-link").first.get_attribute("href") or ""
        )
        if golden:
            page.goto(golden)
            shot("golden")
        if args.related:
            page.goto(f"/steward/golden/{args.related}/")
            page.locator("#relationships").scroll_into_view_if_needed()
            shot("relationships")
        page.goto("/steward/quarantine/")
        links = [a.get_attribute("href") or "" for a in page.locator("a.open-payload").all()]
        for link in links[:20]:  # the first payload with an error beside a field
            page.goto(link)
            if page.locator(".field.has-error").count():
                break
        shot("quarantine")
        page.goto("/quality/customer/")
        shot("quality")
        page.goto("/matching/customer/model")
        shot("match-model")
        browser.close()


if __name__ == "__main__":
    main()
