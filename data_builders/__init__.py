"""Data builders: raw public 3D datasets -> DepthLMBench records.

``data_builders.build(source, root, out, ...)`` is the Python form of ``depthlm build``.
"""


def __getattr__(name: str):
    # lazy, so `import data_builders.base` (every source does) stays cheap
    if name == "build":
        from data_builders.framework import build

        return build
    raise AttributeError(name)
