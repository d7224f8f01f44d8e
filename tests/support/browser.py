"""A real headless Chromium (Debian's chromium and chromium-driver) driven by Selenium.

Selenium is handed /usr/bin/chromedriver, so selenium-manager never looks for or downloads
a driver or a browser (and SE_OFFLINE keeps it from trying).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 15.0  # seconds a page or an element may take to appear (a loaded machine is slow)


def chromium(javascript: bool = True) -> webdriver.Chrome:
    """A new headless Chromium; ``javascript=False`` turns scripts off (as a user can)."""
    binary = shutil.which("chromium")
    if binary is None or not CHROMEDRIVER.exists():
        raise RuntimeError(
            "chromium and chromium-driver are not installed: run the tests through 'make test'"
        )
    os.environ.setdefault("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, CSP reports
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_for(driver: webdriver.Chrome, css: str) -> WebElement:
    """The element matching ``css`` once it is on the page."""
    return WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def click_link(driver: webdriver.Chrome, text: str) -> None:
    """Follow the link whose text is ``text``, and wait for the next page."""
    link = WebDriverWait(driver, WAIT).until(
        expected_conditions.element_to_be_clickable((By.LINK_TEXT, text))
    )
    old = driver.find_element(By.TAG_NAME, "html")
    link.click()
    WebDriverWait(driver, WAIT).until(expected_conditions.staleness_of(old))


def follow(driver: webdriver.Chrome, css: str) -> None:
    """Click the link or button matching ``css``, and wait for the page it leads to."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, WAIT).until(expected_conditions.staleness_of(old))


submit = follow  # a form's button


def main_text(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "main").text
