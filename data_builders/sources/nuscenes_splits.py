"""The official nuScenes scene splits (nuscenes-devkit ``nuscenes/utils/splits.py``).

v1.0-trainval holds exactly the train and val scenes, so train is every scene of
that release not listed in val (700 of 850); val, test, mini_train and mini_val
are the devkit's lists verbatim.
"""

from __future__ import annotations


def _names(numbers) -> tuple[str, ...]:
    return tuple(f"scene-{n:04d}" for n in numbers)


def _ranges(*spans: tuple[int, int]) -> list[int]:
    return [n for a, b in spans for n in range(a, b + 1)]


VAL = _names(
    [3, 12, 13, 14, 15, 16, 17, 18, 35, 36, 38, 39]
    + _ranges((92, 110))
    + [221]
    + _ranges((268, 278))
    + [329, 330, 331, 332, 344, 345, 346]
    + _ranges((519, 524), (552, 565))
    + [625, 626, 627, 629, 630, 632, 633, 634, 635, 636, 637, 638]
    + [770, 771, 775, 777, 778, 780, 781, 782, 783, 784]
    + _ranges((794, 800))
    + [802]
    + _ranges((904, 917), (919, 931))
    + [962, 963, 966, 967, 968, 969, 971, 972]
    + _ranges((1059, 1073))
)

TEST = _names(
    _ranges((77, 91), (111, 119))
    + [140]
    + _ranges((142, 148))
    + [265, 266]
    + _ranges((279, 282), (307, 314), (333, 343), (481, 498), (547, 551), (601, 604), (606, 624))
    + _ranges((827, 831), (833, 842), (844, 846))
    + [932, 933]
    + _ranges((935, 943), (1026, 1043))
)

MINI_TRAIN = _names([61, 553, 655, 757, 796, 1077, 1094, 1100])
MINI_VAL = _names([103, 916])

assert len(VAL) == 150 and len(TEST) == 150, "nuScenes split lists were transcribed wrongly"

# None = "every scene of the release not in VAL" (see module docstring).
SCENES: dict[str, tuple[str, ...] | None] = {
    "train": None,
    "val": VAL,
    "test": TEST,
    "mini_train": MINI_TRAIN,
    "mini_val": MINI_VAL,
}
