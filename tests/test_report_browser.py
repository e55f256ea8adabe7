"""report.html in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them).
Skips, saying why, where they are missing."""

import shutil

import pytest

from lab import report
from lab.cases import builtin, by_id
from lab.results import FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium here: apt-get install chromium "
                                                                   "chromium-driver to run the report in a browser")
from selenium.webdriver.common.by import By  # noqa: E402 (after the skip: selenium is there)

SERVERS = ["prosody", "ejabberd", "jabberd2"]
TRACE = "<message to='bob@ejabberd.test' type='chat'><body>hello</body></message>\n<!-- no answer -->"
RESULTS = [
    CaseResult("C1", "connect", "slixmpp", s, None, PASS, "TLSv1.3", seconds=0.2) for s in SERVERS
] + [
    CaseResult("C9", "message carbons", "slixmpp", "jabberd2", None, NOT_SUPPORTED,
               "jabberd2 at bookworm does not declare carbons", reason="server"),
    CaseResult("S1", "message both ways", "slixmpp", "prosody", "ejabberd", PASS, "delivered", seconds=0.5),
    CaseResult("S2", "presence subscription both ways", "slixmpp", "prosody", "jabberd2", FAIL,
               "no subscribed presence from bob@jabberd2.test within 20 s", trace=TRACE, seconds=20.4,
               started=1795567479.0, ended=1795567499.4,
               attempts=({"status": "fail", "detail": "no subscribed presence"},)),
    CaseResult("S8", "how the sending server authenticated", "observed", "prosody", "ejabberd", PASS, "cert",
               evidence={"auth": "certificate"}),
    CaseResult("S8", "how the sending server authenticated", "observed", "ejabberd", "jabberd2", FLAKY,
               "dialback", evidence={"auth": "dialback"}),
    CaseResult("F1", "SRV target '.'", "slixmpp", "jabberd2", "prosody", FAIL, "looked up prosody.test A",
               evidence={"observed": "fell back to prosody.test A", "expected": "refused at once (RFC 6120 3.2.1)"}),
    CaseResult("F1", "SRV target '.'", "slixmpp", "prosody", "ejabberd", PASS, "refused",
               evidence={"observed": "refused after 8 ms", "expected": "refused at once (RFC 6120 3.2.1)"}),
]


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(report.to_html(RESULTS, "browser", SERVERS, run=report.run_info(1795567479.0, 21.0, ["lab", "test"]),
                                   secrets=["bob-password"]))
    browser.get(path.as_uri())
    return browser


def test_the_page_renders_without_console_errors(page):
    assert page.title == "xmpp interop lab browser"
    assert [e for e in page.get_log("browser") if e["level"] == "SEVERE"] == []


def test_opening_a_failing_cell_shows_its_detail_spec_and_xml(page):
    cell = page.find_element(By.CSS_SELECTOR, "#s2s + .matrix-wrap td.fail")
    assert cell.find_element(By.TAG_NAME, "summary").text == "1 fail"
    result = cell.find_element(By.ID, "S2/slixmpp/prosody->jabberd2")
    assert not result.is_displayed()  # closed until opened
    cell.find_element(By.TAG_NAME, "summary").click()
    result.find_element(By.TAG_NAME, "summary").click()
    text = result.text
    assert "no subscribed presence from bob@jabberd2.test within 20 s" in text
    s2 = by_id(builtin())["S2"]  # its criterion and spec reference, from its unit (lab/cases/s2s.py)
    assert s2.spec in text and s2.criterion in text
    trace = result.find_element(By.CSS_SELECTOR, "pre.trace")
    assert trace.is_displayed() and "<message to='bob@ejabberd.test' type='chat'><body>hello</body></message>" in trace.text
    assert "20.40 s" in text and "attempt 1" in text


def test_a_link_to_a_result_opens_the_cells_it_is_in(page):
    page.find_element(By.CSS_SELECTOR, "#failures ~ table a[href='#S2/slixmpp/prosody->jabberd2']").click()
    assert page.find_element(By.ID, "S2/slixmpp/prosody->jabberd2").get_attribute("open") is not None
    assert page.find_element(By.CSS_SELECTOR, "pre.trace").is_displayed()


def test_the_federation_picture_has_an_arrow_per_ordered_pair(page):
    arrows = page.find_elements(By.CSS_SELECTOR, "svg#federation-picture path.arrow")
    assert len(arrows) == len(SERVERS) * (len(SERVERS) - 1)
    pairs = {(g.get_attribute("data-from"), g.get_attribute("data-to")): g.get_attribute("data-status")
             for g in page.find_elements(By.CSS_SELECTOR, "svg#federation-picture g.pair")}
    assert pairs[("prosody", "jabberd2")] == FAIL and pairs[("prosody", "ejabberd")] == PASS
    assert pairs[("ejabberd", "jabberd2")] == FLAKY and pairs[("jabberd2", "ejabberd")] == "none"
    labels = [t.text for t in page.find_elements(By.CSS_SELECTOR, "svg#federation-picture text.label")]
    assert sorted(labels) == ["cert", "db"]


def test_every_case_id_of_the_run_appears(page):
    body = page.find_element(By.TAG_NAME, "body").text
    for case in {r.case for r in RESULTS}:
        assert page.find_element(By.ID, f"case-{case}").is_displayed() and case in body
    for result in RESULTS:  # and every result, in the cell it belongs to
        assert page.find_element(By.ID, result.id).find_element(By.XPATH, "ancestor::td")


def test_a_fault_cell_is_coloured_by_its_status(page):
    fault = page.find_element(By.CSS_SELECTOR, "#fault-F1 ~ .matrix-wrap")
    failing = fault.find_element(By.CSS_SELECTOR, "td[data-status='fail']")
    passing = fault.find_element(By.CSS_SELECTOR, "td[data-status='pass']")
    assert failing.text.startswith("fail: fell back to prosody.test A")
    assert failing.value_of_css_property("background-color") == "rgba(244, 184, 184, 1)"
    assert passing.value_of_css_property("background-color") == "rgba(212, 244, 212, 1)"
    failing.find_element(By.TAG_NAME, "summary").click()
    assert "refused at once (RFC 6120 3.2.1)" in failing.text  # expected beside observed
