"""The status board on a fake clock and SQLite: states from the recent window, maintenance, the day
bars, a stale render when the store fails, and the HTML's content."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from seawall.edges.status.board import StatusBoard
from seawall.edges.stores.sqlite_slo import SqliteSloStore
from seawall.slo.settings import MaintenanceSettings, StatusSettings
from seawall.slo.store import DAY_S, CountRow
from seawall.testing import FakeClock

MIDNIGHT = 1_700_006_400.0
IDS = ["front_door", "auth", "group:chat", "deployment:a"]


def rows(bucket: int, component: str, total: int, bad: int) -> list[CountRow]:
    return [CountRow(60, bucket, component, "api", total, bad, total - bad, 0, 0.2 * (total - bad)),
            CountRow(DAY_S, bucket // DAY_S * DAY_S, component, "api", total, bad, total - bad, 0, 0.0)]


class Broken:
    async def windows(self, *args):
        raise OSError("database down")


async def test_states_bars_maintenance_and_a_stale_render(tmp_path):
    clock = FakeClock(start_s=0.0, wall_offset_s=MIDNIGHT + 3600)
    store = SqliteSloStore(tmp_path / "slo.db")
    now = int(clock.wall())
    await store.add(rows(now - 120, "front_door", 100, 30) + rows(now - 120, "deployment:a", 100, 60)
                    + rows(now - 2 * DAY_S, "front_door", 1000, 1))
    window = MaintenanceSettings(id="m1", name="Upgrade", components=["group:chat"],
                                 starts_at=datetime.fromtimestamp(now - 60, UTC),
                                 ends_at=datetime.fromtimestamp(now + 600, UTC))
    settings = StatusSettings(title="T", maintenances=[window], uptime_days=30)
    board = StatusBoard(store, settings, IDS, clock=clock, bucket_s=60, paging=lambda: {"auth": {"availability"}})
    await board.refresh()
    doc = json.loads(board.pages["/api/v2/summary.json"].body)
    states = {c["id"]: c["status"] for c in doc["components"]}
    assert states == {"front_door": "partial_outage", "auth": "partial_outage",  # paging, no errors seen
                      "group:chat": "under_maintenance", "deployment:a": "major_outage"}
    assert doc["status"] == {"indicator": "critical", "description": "Major System Outage"}
    assert doc["scheduled_maintenances"][0]["status"] == "in_progress"
    front = next(c for c in board.view.components if c.id == "front_door")
    assert len(front.days) == 30 and front.days[-1].total == 100 and front.days[-3].total == 1000
    assert round(front.uptime or 0, 4) == round(1 - 31 / 1100, 4)
    html = board.pages["/status"].body.decode()
    assert "Major outage" in html and "Under maintenance" in html and "Upgrade" in html and "<script" not in html
    board.store = Broken()  # type: ignore[assignment]
    await board.refresh()
    assert board.view.stale and "could not be refreshed" in board.pages["/status"].body.decode()
    assert json.loads(board.pages["/api/v2/status.json"].body)["status"]["indicator"] == "critical"  # last known


async def test_before_any_traffic_everything_is_operational(tmp_path):
    clock = FakeClock(start_s=0.0, wall_offset_s=MIDNIGHT)
    board = StatusBoard(SqliteSloStore(tmp_path / "slo.db"), StatusSettings(), IDS, clock=clock, bucket_s=60)
    await board.refresh()
    doc = json.loads(board.pages["/api/v2/summary.json"].body)
    assert {c["status"] for c in doc["components"]} == {"operational"}
    assert doc["status"]["indicator"] == "none" and doc["incidents"] == []
    assert b"No requests in the last 24 hours" in board.pages["/status"].body
