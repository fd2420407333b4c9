"""Reading ``GET /metrics`` as Prometheus does: every sample by name and labels."""

from __future__ import annotations

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
