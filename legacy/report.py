"""What an import did or would do, table by table, with every skipped row and why."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("imported", "matched", "earlier", "skipped")


@dataclass
class Report:
    source: str
    path: str
    dry_run: bool = False
    # legacy table -> rows read
    source_rows: dict[str, int] = field(default_factory=dict)
    # legacy table -> outcome (imported, matched, earlier, skipped) -> rows
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # model label -> primary keys written here by this run
    written: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    # (legacy table, reason) -> legacy ids
    skipped: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    nothing_to_do: bool = False

    def count(self, table: str, outcome: str) -> None:
        self.outcomes[table][outcome] += 1

    def skip(self, table: str, legacy_id: object, reason: str) -> None:
        self.count(table, "skipped")
        self.skipped[(table, reason)].append(str(legacy_id))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def new_rows(self) -> int:
        """Legacy rows this run imports or matches (what a second run no longer finds)."""
        return sum(c["imported"] + c["matched"] for c in self.outcomes.values())

    def count_problems(self) -> list[str]:
        """Every row read must have exactly one outcome: nothing lost without a reason."""
        problems = []
        for table, rows in self.source_rows.items():
            handled = sum(self.outcomes[table][o] for o in OUTCOMES)
            if handled != rows:
                problems.append(f"{table}: {rows} rows read, {handled} accounted for")
        return problems

    def summary(self) -> dict[str, Any]:
        """The audit entry's record of the run (counts only: no values, no secrets)."""
        return {
            "source": self.source,
            "file": self.path,
            "tables": {t: dict(self.outcomes[t]) for t in self.source_rows},
            "written": {label: len(pks) for label, pks in self.written.items()},
            "skipped": sum(len(ids) for ids in self.skipped.values()),
        }

    def render(self) -> str:
        title = f"Import from {self.source} ({self.path})"
        if self.dry_run:
            title += ": dry run, nothing was written"
        lines = [title]
        if self.nothing_to_do:
            lines.append("Nothing to do: every row was imported by an earlier run or is skipped.")
        width = max([len(t) for t in self.source_rows] + [12])
        lines.append(
            f"  {'table':<{width}} {'rows':>6} {'imported':>9} {'matched':>8} "
            f"{'earlier':>8} {'skipped':>8}"
        )
        for table, rows in self.source_rows.items():
            c = self.outcomes[table]
            lines.append(
                f"  {table:<{width}} {rows:>6} {c['imported']:>9} {c['matched']:>8} "
                f"{c['earlier']:>8} {c['skipped']:>8}"
            )
        verb = "Would write" if self.dry_run else "Written"
        if self.written:
            made = ", ".join(f"{len(pks)} {label}" for label, pks in sorted(self.written.items()))
            lines.append(f"{verb}: {made}")
        if self.skipped:
            lines.append("Skipped:")
            for (table, reason), ids in self.skipped.items():
                shown = ", ".join(f"#{i}" for i in ids[:10]) + (" …" if len(ids) > 10 else "")
                lines.append(f"  {table} {shown}: {reason}")
        if self.notes:
            lines.append("Notes:")
            lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)
