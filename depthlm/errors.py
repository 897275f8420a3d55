"""Errors users see. Anything raised as DepthLMError is printed as one line by the CLI."""


class DepthLMError(Exception):
    """A problem with the user's input or setup, explained in words."""


class RecordError(DepthLMError):
    """A DepthLMBench record that cannot be used, with where it came from."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None
    ):
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field {field!r})" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.file, self.line, self.field = file, line, field
