"""``promptly customers import FILE.csv``: set customer tiers (and details) in bulk.

Columns: ``channel``, ``external_id``, ``tier`` (required), ``name``, ``email``, ``language``.
A bad row is reported by line and skipped; the others are imported. Importing twice changes
nothing the second time.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from bot.agent_models import CHANNELS
from bot.handoff.config import Tier
from bot.store.base import Store
from knowledge_base.importers import csv_rows

REQUIRED = ("channel", "external_id", "tier")
OPTIONAL = ("name", "email", "language")
# The agent API's limits (bot/agent_models.py, CustomerIn), so both ways in agree.
LENGTHS = {"external_id": (1, 128), "name": (1, 200), "email": (1, 320), "language": (2, 16)}


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    rejected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.created} created, {self.updated} updated, {len(self.rejected)} rejected"]
        lines += [f"  {reason}" for reason in self.rejected]
        return "\n".join(lines)


@dataclass(frozen=True)
class Row:
    channel: str
    external_id: str
    tier: Tier
    name: str | None
    email: str | None
    language: str | None


def parse(path: Path) -> tuple[list[Row], list[str]]:
    """The valid rows and a reason for each rejected one (``file:line: why``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{path}: cannot read: {e}"]
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader, [])]
    except csv.Error as e:
        return [], [f"{path}:1: unreadable header row: {e}"]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return [], [f"{path}:1: missing column(s) {', '.join(missing)}"]
    rows, rejected = [], []
    for line, cells in csv_rows(reader):
        where = f"{path}:{line}"
        if isinstance(cells, csv.Error):
            rejected.append(f"{where}: unreadable row: {cells}")
            continue
        if not cells:
            continue
        # As csv.DictReader did: a repeated column name keeps its last cell.
        record = dict(zip(header, cells, strict=False))
        values = {k: (record.get(k) or "").strip() for k in REQUIRED + OPTIONAL}
        try:
            rows.append(_row(values))
        except ValueError as e:
            rejected.append(f"{where}: {e}")
    return rows, rejected


def _row(values: dict[str, str]) -> Row:
    """The row, or ``ValueError`` saying what is wrong (the agent API's limits)."""
    empty = [k for k in REQUIRED if not values[k]]
    if empty:
        raise ValueError(f"empty {', '.join(empty)}")
    if "\0" in "".join(values.values()):
        raise ValueError("a cell contains a NUL character")
    try:
        tier = Tier(values["tier"].lower())
    except ValueError:
        known = ", ".join(Tier)
        raise ValueError(f"unknown tier {values['tier']!r} (one of {known})") from None
    if values["channel"] not in CHANNELS:
        raise ValueError(f"unknown channel {values['channel']!r} (one of {', '.join(CHANNELS)})")
    for name, (shortest, longest) in LENGTHS.items():
        if values[name] and not shortest <= len(values[name]) <= longest:
            raise ValueError(f"{name} must be {shortest}–{longest} characters")
    optional = {k: values[k] or None for k in OPTIONAL}
    return Row(values["channel"], values["external_id"], tier, **optional)


async def import_customers(store: Store, path: Path) -> ImportSummary:
    rows, rejected = parse(path)
    summary = ImportSummary(rejected=rejected)
    for row in rows:
        _, created = await store.link_customer(
            row.channel,
            row.external_id,
            tier=row.tier,
            name=row.name,
            email=row.email,
            language=row.language,
        )
        if created:
            summary.created += 1
        else:
            summary.updated += 1
    return summary
