"""Text tables every summary writes: Markdown and standalone HTML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> str:
    """A standalone HTML page holding one table: what ``snakemake --report`` can display inline."""
    from html import escape

    from tabulate import tabulate

    body = tabulate([[str(cell) for cell in row] for row in rows], headers=list(header), tablefmt="html")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + escape(title) + "</title>"
        "<style>body{font-family:sans-serif} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px}</style>"
        "</head><body><h2>" + escape(title) + "</h2>" + (f"<p>{escape(note)}</p>" if note else "") + body + "</body></html>\n"
    )
