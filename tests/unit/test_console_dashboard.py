"""The statistics dashboard through the real app: the page, the report as JSON and CSV, the
charts as SVG and their data; admins only."""

from __future__ import annotations

import asyncio
import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.console.dashboard import CHARTS, build_view, edges, key_figures
from tests.console_helpers import signed_in
from tests.unit.test_analytics import SCENARIO, SINCE, UNTIL, log_of
from tests.unit.test_analytics import options as analytics_options
from tests.unit.test_gateway import frames, make_settings, open_ticket, post, wait_for_rasa

SVG = "{http://www.w3.org/2000/svg}svg"


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))


async def handled(client: TestClient, tmp_path, count: int = 2) -> None:
    """``count`` customers write and get their answers; the last one is handed off."""
    await wait_for_rasa(client)
    for i in range(count):
        accepted = await (await post(client, f"question {i}", mid=f"m{i}", customer=f"c{i}")).json()
        assert await frames(client, accepted["conversation_id"], customer=f"c{i}")
    await open_ticket(tmp_path, accepted["conversation_id"], queue="support")


async def test_admin_sees_the_page_with_figures_charts_and_downloads(client, tmp_path):
    await signed_in(client, "admin")
    page = await client.get("/console/dashboard")
    assert page.status == 200
    html = await page.text()
    assert 'data-testid="nav-dashboard"' in html and 'aria-current="page"' in html
    assert 'data-testid="period"' in html and 'data-testid="key-figures"' in html
    for name in CHARTS:
        assert f'data-testid="chart" data-chart="{name}"' in html
    assert html.count('data-testid="download-csv"') == len(CHARTS)
    assert html.count('data-testid="download-json"') == len(CHARTS)
    assert "<script>" not in html  # the console's CSP allows no inline script
    assert page.headers["Cache-Control"] == "no-store"
    assert "img-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("dashboard.js", "dashboard.css"):
        assert (await client.get(f"/console/static/{asset}")).status == 200


async def test_report_json_and_csv_after_messages_were_handled(client, tmp_path):
    await handled(client, tmp_path)
    await signed_in(client, "admin")
    response = await client.get("/api/console/report", params={"period": "today"})
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    data = await response.json()
    assert data["period"] == "today" and not data["empty"]
    assert data["report"]["acks"]["all"]["distribution"]["count"] == 2
    assert data["report"]["tickets"] == 1
    figures = {f["key"]: f for f in data["figures"]}
    assert figures["ack_p99"]["value"] is not None and figures["ack_p99"]["text"].endswith("ms")
    assert figures["ack_within"]["detail"] == "2 of 2"
    assert figures["csat"]["value"] is None and figures["csat"]["text"] == "no data"
    assert {"first_response", "sla_first_response", "deflection", "handoff"} <= set(figures)

    response = await client.get("/api/console/report?period=7d&format=csv")
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = dict(csv.reader(io.StringIO(await response.text())))
    assert rows["acks.all.distribution.count"] == "2"


async def test_charts_are_svg_with_their_data_as_csv_and_json(client, tmp_path):
    await handled(client, tmp_path)
    await signed_in(client, "admin")
    for period in ("today", "30d"):
        responses = await asyncio.gather(
            *(client.get(f"/api/console/charts/{n}.svg?period={period}") for n in CHARTS)
        )
        for response in responses:
            assert response.status == 200, await response.text()
            assert response.content_type == "image/svg+xml"
            assert response.headers["Cache-Control"] == "no-store"
            assert ET.fromstring(await response.read()).tag == SVG
    heatmap = await (await client.get("/api/console/charts/ack_heatmap.json?period=7d")).json()
    assert sum(row["acks"] for row in heatmap["rows"]) == 2
    trend = await client.get("/api/console/charts/sla_trend.csv?period=7d")
    assert trend.headers["Content-Disposition"].startswith("attachment;")
    lines = list(csv.DictReader(io.StringIO(await trend.text())))
    assert len(lines) == 7 * 3  # a row per day and SLA clock
    assert sum(int(r["open"]) for r in lines if r["clock"] == "first_response") == 1


async def test_an_empty_period_says_no_data_and_still_draws(client):
    await signed_in(client, "admin")
    data = await (await client.get("/api/console/report?period=30d")).json()
    assert data["empty"]
    assert {f["text"] for f in data["figures"]} == {"no data"}
    for name in CHARTS:
        response = await client.get(f"/api/console/charts/{name}.svg?period=30d")
        assert ET.fromstring(await response.read()).tag == SVG


@pytest.mark.parametrize("role", ["agent", "editor"])
async def test_agents_and_editors_are_refused(client, role):
    await signed_in(client, role)
    assert (await client.get("/console/dashboard")).status == 403
    for path in ("/api/console/report", "/api/console/charts/stages.svg"):
        response = await client.get(path)
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden"


async def test_signed_out_goes_to_the_sign_in_page(client):
    page = await client.get("/console/dashboard", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/console/login")
    assert (await client.get("/api/console/report")).status == 401


async def test_bad_period_format_or_chart_are_clear_errors(client):
    await signed_in(client, "admin")
    cases = [
        ("/api/console/report?period=1y", 422, "invalid_period"),
        ("/api/console/report?format=xml", 422, "invalid_format"),
        ("/api/console/charts/stages.svg?period=yesterday", 422, "invalid_period"),
        ("/api/console/charts/pie.svg", 404, "unknown_chart"),
        ("/api/console/charts/stages.png", 404, "unknown_format"),
    ]
    for path, status, code in cases:
        response = await client.get(path)
        assert response.status == status, path
        assert (await response.json())["error"]["code"] == code


def test_periods_are_calendar_days_in_the_report_zone():
    zone = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 10, 25, 10, 30, tzinfo=UTC)  # the day summer time ends there
    today = edges("today", now, zone)
    assert today[0] == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # local midnight
    assert today[-1] == now
    assert all(b - a == timedelta(hours=1) for a, b in zip(today, today[1:-1], strict=False))
    week = edges("7d", now, zone)
    assert len(week) == 8 and week[-1] == now
    assert week[0] == datetime(2026, 10, 18, 22, 0, tzinfo=UTC)
    assert week[-2] - week[-3] == timedelta(hours=24)  # the 24th; the 25th lasts 25 hours


def test_trends_split_the_period_by_day_of_handoff_and_of_the_latest_rating():
    now = UNTIL - timedelta(hours=3)
    bounds = edges("7d", now, ZoneInfo("UTC"))
    assert bounds[0] == SINCE
    view = build_view("7d", log_of(SCENARIO), analytics_options(bounds[0], now), bounds)
    assert [b.label for b in view.trend] == [f"2026-11-{d}" for d in range(16, 23)]
    first = [b.sla["first_response"] for b in view.trend]
    # t1 (Tuesday) breached though answered the next day; t2 met and t3 breached (Thursday).
    assert [(c.met, c.breached, c.open) for c in first] == [
        (0, 0, 0),
        (0, 1, 0),
        (0, 0, 0),
        (1, 1, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
    ]
    for clock, split in view.report.sla.items():  # the days add up to the period
        total = split.all
        days = [b.sla[clock] for b in view.trend]
        assert sum(d.met for d in days) == total.met
        assert sum(d.breached for d in days) == total.breached
        assert sum(d.open for d in days) == total.open
    # t1 rated 2 on Wednesday, changed to 4 on Thursday: it counts once, on Thursday.
    assert [b.csat.count for b in view.trend] == [0, 0, 0, 2, 0, 0, 0]
    assert view.trend[3].csat.mean == view.report.csat.all.mean == 4.5
    figures = {f["key"]: f["text"] for f in key_figures(view.report)}
    assert figures["ack_p99"] == "2,500 ms"
    assert figures["ack_within"] == "83.3 %"
    assert figures["sla_first_response"] == "33.3 %"
    assert figures["csat"] == "4.50 / 5"
