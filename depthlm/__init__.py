"""depthlm: teach vision-language models metric depth by asking in words."""

__version__ = "0.1.0"

from depthlm.lifetime import adopt_if_spawned as _adopt

_adopt()  # a vLLM engine process started by depthlm dies with its parent (see depthlm.lifetime)
