"""Reading ``GET /metrics`` as Prometheus does: every sample by name and labels; and README's table of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Any, path: str = "/metrics") -> Samples:
    """Every sample the service exposes, after checking the answer is Prometheus text."""
    response = await client.get(path)
    assert response.status == 200, response.status
    assert response.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series not (yet) exposed."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples called ``name`` keyed by the value of their one label ``label``."""
    return {dict(labels)[label]: count for (sample, labels), count in samples.items()
            if sample == name and len(labels) == 1 and label in dict(labels)}


Reference = dict[str, tuple[str, frozenset[str]]]  # metric name as queried -> (type, label names)
README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> Reference:
    """The rows of README's metrics table (``### Metrics``): name, type, labels."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n### Metrics\n", 1)[1].split("\n#", 1)[0]
    rows: Reference = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            labels = frozenset(label.strip(" `") for label in cells[2].split(",") if label.strip())
            rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


def exposed(text: str) -> Reference:
    """The metrics in Prometheus text, named as queried (a counter with its ``_total``), with their
    type and label names (a histogram's ``le`` aside)."""
    found: Reference = {}
    for family in text_string_to_metric_families(text):
        labels = frozenset(name for sample in family.samples for name in sample.labels if name != "le")
        found[family.name + "_total" if family.type == "counter" else family.name] = (family.type, labels)
    # A counter's <name>_created (single process only) is a sample of that counter, not a metric of its own.
    return {name: row for name, row in found.items()
            if not (name.endswith("_created") and name.removesuffix("_created") + "_total" in found)}
