"""The relative pose every source writes into extras.pair, checked against world points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_builders.pairs import OPENCV_FROM_FLU, OPENCV_FROM_OPENGL, relative_pose, with_opencv_axes


def pose(rotation: np.ndarray, centre) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, centre
    return out


def test_the_pair_pose_maps_a_world_point_between_the_two_cameras():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = pose(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3) * 5)
        b = pose(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3) * 5)
        t, r = relative_pose(a, b)
        world = rng.normal(size=3) * 10
        in_first = a[:3, :3].T @ (world - a[:3, 3])
        in_second = b[:3, :3].T @ (world - b[:3, 3])
        # second camera's centre and axes in the first frame: in_first = R in_second + t
        assert np.allclose(r @ in_second + t, in_first)
        assert np.isclose(np.linalg.norm(t), np.linalg.norm(a[:3, 3] - b[:3, 3]))


@pytest.mark.parametrize(
    "convention, forward",
    [(OPENCV_FROM_FLU, [1.0, 0.0, 0.0]), (OPENCV_FROM_OPENGL, [0.0, 0.0, -1.0])],
    ids=["x-forward-y-left-z-up", "x-right-y-up-z-backward"],
)
def test_a_step_along_the_camera_looking_direction_is_forward_in_opencv_axes(convention, forward):
    yaw = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    first = pose(yaw, [3.0, -2.0, 1.0])
    second = pose(yaw, first[:3, 3] + yaw @ np.array(forward) * 2.0)
    t, r = relative_pose(with_opencv_axes(first, convention), with_opencv_axes(second, convention))
    assert np.allclose(t, [0.0, 0.0, 2.0]) and np.allclose(r, np.eye(3))


def test_non_finite_poses_are_refused():
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite 4x4"):
        relative_pose(np.eye(4), bad)
