"""``promptly customers import FILE.csv``: set customer tiers (and details) in bulk.

Columns: ``channel``, ``external_id``, ``tier`` (required), ``name``, ``email``, ``language``.
A bad row is reported by line and skipped; the others are imported. Importing twice changes
nothing the second time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from bot.handoff.config import Tier
from bot.store.base import Store

REQUIRED = ("channel", "external_id", "tier")
OPTIONAL = ("name", "email", "language")


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
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        return [], [f"{path}:1: missing column(s) {', '.join(missing)}"]
    rows, rejected = [], []
    for line, record in enumerate(reader, start=2):
        values = {k: (record.get(k) or "").strip() for k in REQUIRED + OPTIONAL}
        empty = [k for k in REQUIRED if not values[k]]
        if empty:
            rejected.append(f"{path}:{line}: empty {', '.join(empty)}")
            continue
        try:
            tier = Tier(values["tier"].lower())
        except ValueError:
            known = ", ".join(Tier)
            rejected.append(f"{path}:{line}: unknown tier {values['tier']!r} (one of {known})")
            continue
        optional = {k: values[k] or None for k in OPTIONAL}
        rows.append(Row(values["channel"], values["external_id"], tier, **optional))
    return rows, rejected


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
