"""``/api/v1/projects``: projects, ordered scenes and clips over a real server."""

from __future__ import annotations

import asyncio

from tests.support import Easel, ServerFactory, running_pg_cluster
from transport.rest.bodies import MAX_PAGE_BYTES

BASE = "/api/v1/projects"


async def test_projects_scenes_and_clips_round_trip(easel: Easel) -> None:
    status, project = await easel.post(BASE, {"name": "film", "description": "short"})
    assert status == 201
    assert (project["name"], project["description"]) == ("film", "short")
    pid = project["id"]
    assert await easel.request("GET", f"{BASE}/{pid}") == (200, project)

    scenes = []
    for name in ("intro", "middle", "end"):
        status, scene = await easel.post(f"{BASE}/{pid}/scenes", {"name": name})
        assert status == 201
        scenes.append(scene)
    assert [s["position"] for s in scenes] == [0, 1, 2]

    order = [scenes[2]["id"], scenes[0]["id"], scenes[1]["id"]]
    status, body = await easel.request("PUT", f"{BASE}/{pid}/scenes/order", {"scene_ids": order})
    assert status == 200
    assert [s["id"] for s in body["items"]] == order
    status, page = await easel.request("GET", f"{BASE}/{pid}/scenes?limit=2")
    assert status == 200
    assert ([s["name"] for s in page["items"]], page["total"]) == (["end", "intro"], 3)

    sid = scenes[0]["id"]
    clips_url = f"{BASE}/{pid}/scenes/{sid}/clips"
    status, clip = await easel.post(clips_url, {"start": 1.0, "duration": 2.5, "name": "c"})
    assert status == 201
    assert (clip["scene_id"], clip["project_id"]) == (sid, pid)
    status, moved = await easel.request("PATCH", f"{clips_url}/{clip['id']}", {"start": 4.0})
    assert (status, moved["start"], moved["duration"]) == (200, 4.0, 2.5)
    status, page = await easel.request("GET", clips_url)
    assert [c["id"] for c in page["items"]] == [clip["id"]]

    status, renamed = await easel.request("PATCH", f"{BASE}/{pid}", {"name": "feature"})
    assert (status, renamed["name"]) == (200, "feature")

    assert (await easel.request("DELETE", f"{BASE}/{pid}"))[0] == 204
    for path in (f"{BASE}/{pid}", f"{BASE}/{pid}/scenes/{sid}", f"{clips_url}/{clip['id']}"):
        status, problem = await easel.request("GET", path)
        assert (status, problem["code"]) == (404, "not_found")


async def test_errors_are_problem_json(easel: Easel) -> None:
    await easel.post(BASE, {"name": "taken"})
    status, problem = await easel.post(BASE, {"name": "taken"})
    assert (status, problem["code"]) == (409, "conflict")
    status, problem = await easel.post(BASE, {"name": ""})
    assert (status, problem["code"]) == (422, "invalid")
    status, problem = await easel.request("GET", f"{BASE}?limit=0")
    assert (status, problem["code"]) == (422, "invalid")
    status, problem = await easel.request("GET", f"{BASE}?limit=ten")
    assert (status, problem["code"]) == (422, "invalid")

    _, a = await easel.post(BASE, {"name": "a"})
    _, b = await easel.post(BASE, {"name": "b"})
    _, scene = await easel.post(f"{BASE}/{a['id']}/scenes", {"name": "s"})
    status, problem = await easel.request("GET", f"{BASE}/{b['id']}/scenes/{scene['id']}")
    assert (status, problem["code"]) == (404, "not_found")
    status, problem = await easel.request(
        "PUT", f"{BASE}/{a['id']}/scenes/order", {"scene_ids": []}
    )
    assert (status, problem["code"]) == (422, "invalid")


async def test_pages_of_projects(easel: Easel) -> None:
    for index in range(5):
        await easel.post(BASE, {"name": f"p{index}"})
    status, page = await easel.request("GET", f"{BASE}?limit=2&offset=2")
    assert status == 200
    assert ([p["name"] for p in page["items"]], page["total"]) == (["p2", "p3"], 5)
    assert (page["limit"], page["offset"]) == (2, 2)


async def test_ready_checks_the_store(easel: Easel) -> None:
    status, body = await easel.request("GET", "/api/v1/ready")
    assert status == 200
    assert body["checks"]["store"]["ok"] is True


async def test_database_outage_is_503_then_recovers(easel_factory: ServerFactory) -> None:
    with running_pg_cluster() as cluster:
        url = await cluster.create_database()
        easel = await easel_factory(database_url=url, db_auto_migrate=True, db_timeout=2)
        assert (await easel.post(BASE, {"name": "before"}))[0] == 201

        await asyncio.to_thread(cluster.stop, "fast")
        status, body = await easel.request("GET", "/api/v1/ready")
        assert (status, body["status"], body["checks"]["store"]["ok"]) == (
            503,
            "unavailable",
            False,
        )
        status, problem = await easel.request("GET", BASE)
        assert (status, problem["code"]) == (503, "unavailable")

        await asyncio.to_thread(cluster.start)
        for _ in range(50):
            status, body = await easel.request("GET", "/api/v1/ready")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        status, page = await easel.request("GET", BASE)
        assert (status, [p["name"] for p in page["items"]]) == (200, ["before"])


async def test_a_page_of_large_records_stops_at_the_byte_bound_and_says_where_to_go_on(
    easel: Easel,
) -> None:
    # 120 projects of ~40 KB each (10,000 four-byte characters): ~4.7 MB in all
    large = "\U0001f600" * 10_000
    for index in range(120):
        status, _ = await easel.post(BASE, {"name": f"p{index:03}", "description": large})
        assert status == 201
    seen: list[str] = []
    offset: int | None = 0
    sizes = []
    while offset is not None:
        async with easel.http.get(f"{easel.url}{BASE}?limit=500&offset={offset}") as response:
            raw = await response.read()
            page = await response.json()
        sizes.append(len(raw))
        assert page["total"] == 120
        seen += [project["name"] for project in page["items"]]
        offset = page["next_offset"]
    assert len(sizes) == 2  # the bound cut the first page
    assert max(sizes) <= MAX_PAGE_BYTES + 1024
    assert seen == [f"p{index:03}" for index in range(120)]
