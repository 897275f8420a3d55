"""Camera options shared by the commands that take a photo (ask, chat, dense): the same
flags, meaning the same, and the same report of what camera is assumed."""

from __future__ import annotations

import argparse


def add_camera_arguments(p: argparse.ArgumentParser) -> None:
    cam = p.add_mutually_exclusive_group()
    cam.add_argument(
        "--intrinsics", help="fx,fy,cx,cy in pixels of the photo as displayed (or fx,fy,cx,cy,W,H)"
    )
    cam.add_argument("--fov", type=float, help="horizontal field of view in degrees")


def camera_lines(camera) -> list[str]:
    lines = [f"camera: {camera.describe()}"]
    if camera.warning:
        lines.append(f"warning: {camera.warning}")
    return lines
