"""``depthlm tasks``: the eight tasks with their answers, metrics and sources; usable counts per record set."""

from __future__ import annotations

import json

from PIL import Image

from depthlm.cli import main
from depthlm.geometry import Intrinsics
from depthlm.records import Record, write_records


def test_tasks_lists_the_eight_with_answer_kind_metrics_and_sources(capsys):
    assert main(["tasks"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0].strip("| ") for r in rows] == [
        "depth", "points", "distance", "closer", "region", "hinted", "time", "motion"
    ]  # fmt: skip
    by_name = {r[0].strip("| "): r for r in rows}
    assert by_name["closer"][1:3] == ["choice", "accuracy"]
    assert by_name["region"][4] == "synthetic, nyuv2, sunrgbd" and by_name["depth"][4] == "all"
    assert by_name["motion"][1] == "metres, 2 images"
    assert by_name["motion"][4] == "synthetic, scannetpp, nuscenes, ddad, argoverse2, waymo"


def test_tasks_json_and_data_counts_say_why_records_cannot_serve(tmp_path, capsys):
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "a.png")
    k = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
    recs = [
        Record(
            str(tmp_path / "a.png"),
            k,
            [[10, 10], [50, 40], [30, 20]],
            [1.0, 3.0, 2.0],
            depth_type="z",
            id="three",
        ),
        Record(str(tmp_path / "a.png"), k, [[10, 10]], [1.0], depth_type="z", id="one"),
    ]
    write_records(tmp_path / "r.jsonl", recs)
    assert main(["tasks", "--json", "--data", str(tmp_path / "r.jsonl")]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["depth"]["data"] == {"usable": 2, "records": 2, "not_usable": {}}
    assert rows["distance"]["data"]["not_usable"] == {"needs 2 labelled points, record has 1": 1}
    assert rows["region"]["data"]["not_usable"] == {"needs extras objects, masks": 2}
    assert "synthetic" in rows["time"]["sources"] and rows["time"]["metrics"] == ["delta1", "abs_rel"]
    assert rows["points"]["data"]["usable"] == 0  # the default K = 4 needs 4 points
