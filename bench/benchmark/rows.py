"""The measured quantities: one ``Row`` each (the CSV's long format), written as CSV and looked up by the report."""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

CSV_COLUMNS = ["section", "subject", "condition", "quantity", "median", "min", "max", "repeats", "unit"]


@dataclass
class Row:
    section: str
    subject: str
    condition: str
    quantity: str
    values: list[float]
    unit: str

    def as_csv(self) -> dict[str, object]:
        return {"section": self.section, "subject": self.subject, "condition": self.condition,
                "quantity": self.quantity, "median": statistics.median(self.values), "min": min(self.values),
                "max": max(self.values), "repeats": len(self.values), "unit": self.unit}


def write_csv(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_csv())


def find(rows: list[Row], section: str, subject: str | None = None, condition: str | None = None,
          quantity: str | None = None) -> list[Row]:
    return [r for r in rows if r.section == section and (subject is None or r.subject == subject)
            and (condition is None or r.condition == condition) and (quantity is None or r.quantity == quantity)]


def median_of(row: Row) -> float:
    return statistics.median(row.values)


def cell(row: Row, fmt: str = ".2f") -> str:
    """median (min-max)."""
    if len(row.values) == 1:
        return format(row.values[0], fmt)
    return f"{median_of(row):{fmt}} ({min(row.values):{fmt}}-{max(row.values):{fmt}})"
