"""ops/monitoring: promtool checks the scrape config and the alert rules and runs their
unit tests; every metric the rules and the dashboard query is exported by a real
engine; the REST metrics keep their labels bounded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, Easel, ServerFactory, collect, missing, png
from transport.protocol import ContentType

MONITORING = ROOT / "ops" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
CONFIG = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

FLEET_GROUP = "easel-fleet"
FLEET_METRICS = {"easel_comfyui_servers", "easel_jobs_oldest_queued_age_seconds"}
"""Exported by the ComfyUI fleet (its rules group queries them)."""
PROMETHEUS_SERIES = {"up"}
"""Series Prometheus writes itself for each target."""
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*"}


# --- promtool -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing("promtool (Debian's prometheus package)")
        raise AssertionError("unreachable")
    return path


def run(*command: str, cwd: Path = MONITORING) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_rules_pass_promtool_check(promtool: str) -> None:
    output = run(promtool, "check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(rules())} rules found" in output, output


def test_scrape_config_passes_promtool_check(promtool: str, tmp_path: Path) -> None:
    run(promtool, "check", "config", "--syntax-only", str(CONFIG))
    # The full check also reads the rule files and needs the credentials file to exist,
    # as Prometheus will: check a copy beside a stand-in key.
    for source in (CONFIG, ALERTS):
        shutil.copy(source, tmp_path / source.name)
    text = CONFIG.read_text()
    key = re.search(r"^\s*credentials_file:\s*(\S+)\s*$", text, re.MULTILINE)
    assert key is not None, "the scrape config must read the metrics key from a file"
    assert re.search(r"^\s*authorization:\s*$", text, re.MULTILINE)
    assert "--role metrics" in text, "say how to create the key"
    (tmp_path / key.group(1)).write_text("stand-in-token")
    output = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in output


def test_alert_unit_tests_pass(promtool: str) -> None:
    output = run(promtool, "test", "rules", str(ALERTS_TEST))
    assert "SUCCESS" in output, output


def test_every_alert_has_unit_tests_that_fire_and_that_do_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    current = None
    for line in ALERTS_TEST.read_text().splitlines():
        if match := re.match(r"\s*alertname:\s*(\S+)\s*$", line):
            current = match.group(1)
        elif current and (match := re.match(r"\s*exp_alerts:\s*(\[\])?\s*$", line)):
            (quiet if match.group(1) else fires).add(current)
            current = None
    alerts = {rule.alert for rule in rules()}
    assert alerts - fires == set(), "alerts without a firing unit test"
    assert alerts - quiet == set(), "alerts without a unit test where they stay quiet"


def test_every_alert_has_severity_for_annotations_and_a_runbook() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules():
        assert rule.fields.get("for"), rule.alert
        assert rule.labels.get("severity") in {"critical", "warning"}, rule.alert
        assert {"summary", "description", "runbook"} <= set(rule.annotations), rule.alert
        assert rule.annotations["runbook"] == f"docs/operations.md#{rule.alert.lower()}"
        assert f"### {rule.alert}" in runbook, f"no runbook section for {rule.alert}"


def test_fleet_alerts_are_in_their_own_group() -> None:
    for rule in rules():
        used = metric_names(rule.expr)
        if rule.group == FLEET_GROUP:
            assert used <= FLEET_METRICS, rule.alert
        else:
            assert not used & FLEET_METRICS, rule.alert
    assert {n for r in rules() if r.group == FLEET_GROUP for n in metric_names(r.expr)} == (
        FLEET_METRICS
    )


# --- the dashboard ------------------------------------------------------------------


def test_dashboard_is_valid_json_with_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    panels = list(all_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = {panel["title"] for panel in panels if panel["type"] == "row"}
    assert {"Realtime frames", "Sessions", "Pipelines", "Actors", "Database", "REST"} <= rows
    assert "Event loop" in rows
    titles = " ".join(panel["title"] for panel in panels).lower()
    for topic in ("frame latency", "restarts", "mailbox", "pool use", "p95 latency", "lag"):
        assert topic in titles, topic
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_expressions_parse(promtool: str, tmp_path: Path) -> None:
    # promtool has no query parser of its own: check them as recording rules.
    records = [
        {"record": f"dashboard:expr_{index}", "expr": expr}
        for index, expr in enumerate(dashboard_exprs())
    ]
    assert len(records) >= 20
    path = tmp_path / "dashboard-rules.json"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": records}]}))
    output = run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(records)} rules found" in output, output


# --- every queried metric is exported ------------------------------------------------


@pytest.fixture
async def easel(easel_factory: ServerFactory) -> Easel:
    return await easel_factory(max_sessions=7)


async def scrape(easel: Easel) -> str:
    async with easel.http.get(easel.url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


async def test_every_queried_metric_is_exported(easel: Easel) -> None:
    # a little traffic: a session, a frame and its result, REST calls
    client = await easel.connect(pipeline="passthrough", drain="all")
    await client.send_frame(1, ContentType.PNG, png())
    assert len(await collect(client, 1)) == 1
    assert (await easel.request("GET", "/api/v1/pipelines"))[0] == 200
    exported = exported_names(await scrape(easel))
    await client.close()

    fleet: set[str] = set()
    queried: set[str] = set()
    for rule in rules():
        (fleet if rule.group == FLEET_GROUP else queried).update(metric_names(rule.expr))
    for expr in dashboard_exprs():
        queried |= metric_names(expr)
    assert len(queried) >= 15, queried
    absent = queried - exported - PROMETHEUS_SERIES
    assert absent == set(), f"queried but not exported by the engine: {sorted(absent)}"
    assert fleet - exported == set(), f"fleet rules query unexported: {sorted(fleet - exported)}"


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{route!="/x", le="+Inf"}'
        "[5m] offset 1h))) > 0.2 and on (instance) sum without (state) (b) / ignoring (x) "
        'group_left (y) c:rate5m * 1e3 > bool 2.5e-3 unless label_replace(d, "z", "$1", '
        '"e", "f(.*)") or max_over_time(g[1h:5m]) or -inf < absent(h{i="j"})'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c:rate5m", "d", "g", "h"}


def test_exported_names_account_for_suffixes() -> None:
    text = (
        "# HELP h_seconds x\n# TYPE h_seconds histogram\n"
        "# HELP c_total x\n# TYPE c_total counter\n"
        "# HELP g x\n# TYPE g gauge\n"
        'g{a="b"} 1.0\n'
    )
    assert exported_names(text) == {"h_seconds_bucket", "h_seconds_sum", "h_seconds_count"} | {
        "c_total",
        "g",
    }


# --- the REST metrics ----------------------------------------------------------------


def samples(text: str, name: str) -> list[dict[str, str]]:
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = line[len(name) + 1 : line.rindex("}")]
            found.append(dict(re.findall(r'(\w+)="([^"]*)"', labels)))
    return found


async def test_rest_requests_are_timed_by_route_method_and_status(easel: Easel) -> None:
    assert (await easel.request("GET", "/api/v1/pipelines"))[0] == 200
    assert (await easel.request("GET", "/api/v1/pipelines/ghost"))[0] == 404
    assert (await easel.request("GET", "/api/v1/pipelines/other-ghost"))[0] == 404
    assert (await easel.request("GET", "/no/such/path"))[0] == 404
    assert (await easel.request("PROPFIND", "/api/v1/pipelines"))[0] == 405
    client = await easel.connect(pipeline="passthrough")
    await client.close()
    text = await scrape(easel)
    counts = {
        (s["route"], s["method"], s["status"])
        for s in samples(text, "easel_http_request_duration_seconds_count")
    }
    assert ("/api/v1/pipelines", "GET", "200") in counts
    assert ("/api/v1/pipelines/{name}", "GET", "404") in counts
    assert ("/api/v1/sessions", "POST", "201") in counts
    assert ("unmatched", "GET", "404") in counts
    assert ("unmatched", "other", "405") in counts
    routes = {route for route, _, _ in counts}
    assert not any("ghost" in route or "such" in route for route in routes), routes
    assert not any(route.endswith("/ws") for route in routes), "WebSockets are not timed"
    assert 'le="0.2"' in text, "the 200 ms alert needs a bucket bound there"
    line = next(x for x in text.splitlines() if x.startswith("easel_sessions_max "))
    assert float(line.split()[1]) == 7


# --- reading the files ---------------------------------------------------------------


@dataclass
class Rule:
    group: str
    alert: str
    expr: str
    fields: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]


def rules() -> list[Rule]:
    """The alerting rules of alerts.yml, read by a reader of the plain YAML it is
    written in (mappings, lists, quoted and folded strings), which promtool's count of
    the rules cross-checks."""
    found: list[Rule] = []
    group = ""
    section: dict[str, str] | None = None
    lines = ALERTS.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, _, value = line.strip().removeprefix("- ").partition(":")
        value = value.strip()
        if value in {">-", ">", "|", "|-"}:
            block = []
            while index < len(lines) and (
                not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
            ):
                block.append(lines[index].strip())
                index += 1
            value = " ".join(part for part in block if part)
        elif value[:1] in {'"', "'"}:
            value = value[1:-1]
        if key == "name" and indent == 2:
            group = value
        elif key == "alert":
            found.append(Rule(group, value, "", {}, {}, {}))
            section = found[-1].fields
        elif found and key in {"labels", "annotations"} and not value:
            section = found[-1].labels if key == "labels" else found[-1].annotations
        elif found and key in {"expr", "for"}:
            found[-1].fields[key] = value
            section = found[-1].fields
            if key == "expr":
                found[-1].expr = value
        elif section is not None and found:
            section[key] = value
    assert all(rule.expr for rule in found)
    return found


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    """Every query of the dashboard, its variables replaced by values that parse."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            assert match is not None, text
            exprs.append(match.group(1))
    out = []
    for expr in exprs:
        text = expr
        for variable, value in DASHBOARD_VARIABLES.items():
            text = text.replace(variable, value)
        assert "$" not in text, f"unknown variable in {expr}"
        out.append(text)
    return out


_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'  # strings
    r"|\{[^}]*\}|\[[^\]]*\]"  # label matchers, ranges and subqueries
    r"|(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[a-z]*)"  # numbers and durations
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
)
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels, keywords)."""
    names: set[str] = set()
    text = _CLAUSE.sub(" ", "".join(_strip_strings(expr)))
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None or name.lower() in _KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(name)
    return names


def _strip_strings(expr: str) -> Iterator[str]:
    """The expression with its string literals and label matchers emptied, so a clause
    pattern cannot match inside them."""
    position = 0
    for match in _TOKEN.finditer(expr):
        token = match.group()
        if token[:1] in {'"', "'", "`", "{"}:
            yield expr[position : match.start()]
            yield '""' if token[:1] != "{" else "{}"
            position = match.end()
    yield expr[position:]


def exported_names(exposition: str) -> set[str]:
    """Names a query can select from this scrape: declared families (a labelled counter
    has no sample until its first event) with their suffixes, and every sample name."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {name, f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            match = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
            assert match is not None, line
            names.add(match.group())
    return names
