"""The README's picture of the report (docs/report.png): a run's report.html in Debian's
headless Chromium, its first failing result opened. Needs chromium and chromium-driver.

    ./run python docs/screenshot/report.py REPORT_HTML [OUT_PNG]
"""

import shutil
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By


def main(page: Path, out: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                              options=options)
    try:
        driver.get(page.resolve().as_uri())
        failing = driver.find_element(By.CSS_SELECTOR, "#failures ~ table a")  # the first failure's link
        target = failing.get_attribute("href").split("#", 1)[1]
        failing.click()  # opens the matrix cell and the result it points at
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'center'})", target)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "docs/report.png"))
