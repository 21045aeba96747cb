"""Simulated reader studies with known structure, for demos, tests and the benchmark.

A binormal-style latent model: reader j's evidence that case k is synthetic in modality i is
    z = truth_k * (ability_j + effect_i) + difficulty_k + noise,
the call is z > threshold_j, the confidence (1..levels) grows with |z - threshold_j|, and the rating is
:func:`~readerstudy.stats.table.ordinal_score` of call and confidence. Quality scores (1-5) are a little
lower for synthetic images; active reading times are log-normal. A share of cases is read twice (hidden
repeats, ``replicate`` 1).
"""

from __future__ import annotations

import numpy as np

from readerstudy.stats.table import ReadingTable, ordinal_score


def simulate_study(
    *,
    readers: int = 5,
    modalities: int = 2,
    cases: int = 100,
    synthetic_share: float = 0.5,
    generators: tuple[str, ...] = ("gen-a", "gen-b"),
    confidence_levels: int = 5,
    repeat_share: float = 0.0,
    modality_effect: float = 0.3,
    seed: int = 0,
) -> ReadingTable:
    """A fully crossed study table with every optional column filled."""
    rng = np.random.default_rng(seed)
    truth = (np.arange(cases) < round(synthetic_share * cases)).astype(int)
    rng.shuffle(truth)
    generator = np.where(truth == 1, np.array(generators, dtype=object)[rng.integers(0, len(generators), cases)], "")
    difficulty = rng.normal(0.0, 0.5, cases)
    ability = rng.normal(1.0, 0.4, readers)
    threshold = rng.normal(0.5, 0.3, readers)
    effect = modality_effect * np.arange(modalities)
    m, r, k = np.meshgrid(np.arange(modalities), np.arange(readers), np.arange(cases), indexing="ij")
    m, r, k = m.ravel(), r.ravel(), k.ravel()
    repeats = np.flatnonzero(rng.random(m.size) < repeat_share)
    replicate = np.r_[np.zeros(m.size, dtype=int), np.ones(repeats.size, dtype=int)]
    m, r, k = np.r_[m, m[repeats]], np.r_[r, r[repeats]], np.r_[k, k[repeats]]
    z = truth[k] * (ability[r] + effect[m]) + difficulty[k] + rng.normal(0.0, 1.0, m.size)
    label = (z > threshold[r]).astype(int)
    confidence = np.clip(np.ceil(np.abs(z - threshold[r]) / 0.5), 1, confidence_levels)
    quality_mean = 3.6 - 0.6 * truth[k]
    quality = {
        name: np.clip(np.rint(quality_mean + rng.normal(0.0, 0.9, m.size)), 1, 5)
        for name in ("anatomy", "style", "artifacts")
    }
    return ReadingTable(
        reader=np.array([f"reader-{j + 1:02d}" for j in r]),
        modality=np.array([f"modality-{i + 1}" for i in m]),
        case=np.array([f"case-{c + 1:05d}" for c in k]),
        truth=truth[k],
        rating=ordinal_score(label, confidence, confidence_levels),
        label=label,
        confidence=confidence,
        active_seconds=np.round(rng.lognormal(2.5, 0.5, m.size), 1),
        generator=generator[k],
        replicate=replicate,
        **quality,
    )
