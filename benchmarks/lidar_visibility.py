"""Label leaks of the LiDAR visibility tests at real sensor density (docs/sources-lidar.md).

Each source's sensor (beam layout, azimuth step, mounting; data_builders/lidar_sim.py) scans
analytic streets with thin near objects in front of far walls; every label is checked against
the depth the camera sees through its pixel. Prints one markdown row per source and method.

    .venv/bin/python benchmarks/lidar_visibility.py --scenes 5
"""

from __future__ import annotations

import argparse
import time

from data_builders.lidar import VisibilityConfig
from data_builders.lidar_sim import RIGS, LeakStats, sensor_config, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5, help="street scenes per source (seeds 0..N-1)")
    args = parser.parse_args()
    print("| source | method | labels | leaks | leak rate | visible returns kept | s/frame |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, rig in RIGS.items():
        methods = {
            "window 7 px (before)": VisibilityConfig(method="window"),
            "beams (now)": sensor_config(rig),
        }
        for label, cfg in methods.items():
            st, start = LeakStats(), time.perf_counter()
            for seed in range(args.scenes):
                st.add(simulate(rig, seed, cfg))
            sec = (time.perf_counter() - start) / args.scenes
            print(
                f"| {name} | {label} | {st.labels:,} | {st.leaks:,} | {100 * st.leak_rate:.3f} % "
                f"| {100 * st.kept:.1f} % | {sec:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
