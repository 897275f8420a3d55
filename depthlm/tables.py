"""The one markdown-table writer: evaluation rows, the leaderboard, the demo's report and
`depthlm tasks` all print through it, so every table in the kit is laid out alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub markdown table, no trailing newline. ``align`` has one letter per column
    ('l' or 'r'; missing letters mean left), so numbers can be right-aligned."""
    head = [str(h) for h in head]
    rule = [("---:" if align[i : i + 1] == "r" else "---") for i in range(len(head))]
    lines = [_line(head), _line(rule)]
    for row in rows:
        cells = [str(c) for c in row]
        if len(cells) != len(head):
            raise ValueError(f"a row of {len(cells)} cells under a header of {len(head)}: {cells}")
        lines.append(_line(cells))
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
