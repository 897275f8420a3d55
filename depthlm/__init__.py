"""depthlm: teach vision-language models metric depth by asking in words."""

__version__ = "0.1.0"
