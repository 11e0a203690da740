"""Which generator to train: ``training.generator: auto`` resolved by data shape and privacy requirement.

Rules (every one overridable by naming a generator in the configuration):

* **DP required** (``training.privacy.required``):
  - ``aim_stream`` when the stream's windowed DP statistics are enabled and release every
    non-nullable modelled field: the model is post-processing of what is already published,
    so it costs no budget at all;
  - otherwise ``aim`` up to :data:`AIM_MAX_FIELDS` modelled fields (AIM beat MST on workload
    error at ε = 1 on Adult, ``benchmarks/tabular.py``), ``mst`` up to :data:`MST_MAX_FIELDS`
    (AIM's rounds grow with the number of candidate marginals; MST's three estimations do not),
    and ``neural`` with DP-SGD beyond that (marginal models need a domain per pair of fields);
* **no DP requirement**: from :data:`VALIDATE_MIN_ROWS` training rows both the Gaussian copula
  and ``neural`` are candidates and a quick validation on the control set picks one
  (:mod:`synthstream.models.selection`; the copula won on 4 of 6 public tables a reviewer
  tried, so row count alone is not enough); ``name`` is then what row count alone would pick
  (``neural`` from :data:`NEURAL_MIN_ROWS`), used when there is no control set to score on.
  Below :data:`VALIDATE_MIN_ROWS` the copula alone (too few rows to train a network on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthstream.config import StatsConfig, TrainingConfig
from synthstream.errors import ConfigError
from synthstream.models.encoding import modelled_fields
from synthstream.schemas.record import RecordSchema

__all__ = [
    "AIM_MAX_FIELDS",
    "MST_MAX_FIELDS",
    "NEURAL_MIN_ROWS",
    "VALIDATE_MIN_ROWS",
    "GeneratorChoice",
    "choose_generator",
    "generator_options",
    "stats_cover",
]

AIM_MAX_FIELDS = 32
MST_MAX_FIELDS = 96
NEURAL_MIN_ROWS = 2_000
VALIDATE_MIN_ROWS = 500
_DP = frozenset({"aim", "mst", "aim_stream"})


@dataclass(frozen=True)
class GeneratorChoice:
    """The generator to train, whether it is DP, and why it was chosen.

    ``candidates`` (two or more names) asks the scheduler to fit each and keep the one that
    scores best on the control set; ``name`` is the fallback when there is no control set.
    """

    name: str
    dp: bool
    reason: str
    candidates: tuple[str, ...] = ()


def stats_cover(schema: RecordSchema, stats: StatsConfig | None) -> bool:
    """Whether the enabled DP statistics release every non-nullable modelled field of ``schema``."""
    if stats is None or not stats.enabled:
        return False
    released = set(stats.numeric) | set(stats.categorical)
    if not released:
        return False  # the stage then releases every categorical field: numeric ones would be missing
    needed = {f.name for f in modelled_fields(schema) if not f.nullable}
    return needed <= released


def choose_generator(
    config: TrainingConfig, schema: RecordSchema, *, rows: int, stats: StatsConfig | None = None
) -> GeneratorChoice:
    """Resolve ``config.generator`` (``auto`` or a name) for this schema and buffer size.

    :class:`ConfigError` when an explicit choice cannot work here (``aim_stream`` without
    statistics covering the fields).
    """
    required = config.privacy.required
    name = config.generator
    if name != "auto":
        if name == "aim_stream" and not (stats is not None and stats.enabled):
            raise ConfigError(["training.generator aim_stream needs stats.enabled (it fits the released marginals)"])
        dp = name in _DP or (name == "neural" and required)
        return GeneratorChoice(name, dp, "configured")
    fields = len(modelled_fields(schema))
    if required:
        if stats_cover(schema, stats):
            return GeneratorChoice("aim_stream", True, "DP required; the stream's DP marginals cover the fields (free)")
        if fields <= AIM_MAX_FIELDS:
            return GeneratorChoice("aim", True, f"DP required; {fields} fields <= {AIM_MAX_FIELDS}: AIM")
        if fields <= MST_MAX_FIELDS:
            return GeneratorChoice("mst", True, f"DP required; {fields} fields: MST scales better than AIM")
        return GeneratorChoice("neural", True, f"DP required; {fields} fields: neural with DP-SGD")
    fallback = "neural" if rows >= NEURAL_MIN_ROWS else "gaussian_copula"
    if rows >= VALIDATE_MIN_ROWS:
        return GeneratorChoice(
            fallback,
            False,
            f"{rows} rows >= {VALIDATE_MIN_ROWS}: copula and neural, the better on the control set",
            candidates=("gaussian_copula", "neural"),
        )
    return GeneratorChoice("gaussian_copula", False, f"{rows} rows < {VALIDATE_MIN_ROWS}: copula")


def generator_options(
    choice: GeneratorChoice,
    config: TrainingConfig,
    *,
    ledger_path: Path | None,
    stream: str,
    key: str,
) -> dict[str, Any]:
    """The constructor options of the chosen generator (what :func:`~synthstream.models.training.make_generator` takes).

    DP generators get a :class:`~synthstream.models.dp_budget.DPContext` on ``ledger_path``
    with the stream's model budget and the fit's stable ``key``.
    """
    from synthstream.models.dp_budget import DPContext

    marginal = config.marginal
    privacy = config.privacy
    dp = None
    if choice.dp and choice.name != "aim_stream":
        if ledger_path is None:
            raise ConfigError([f"generator {choice.name} is DP and needs the privacy ledger"])
        dp = DPContext(
            ledger_path=ledger_path,
            stream=stream,
            epsilon=privacy.epsilon,
            delta=privacy.delta,
            epsilon_per_fit=privacy.per_fit,
            key=key,
        )
    if choice.name == "neural":
        neural = config.neural
        return {
            "epochs": neural.epochs,
            "min_steps": neural.min_steps,
            "max_epochs": neural.max_epochs,
            "warm_start_epochs": neural.warm_start_epochs,
            "batch_size": neural.batch_size,
            "learning_rate": neural.learning_rate,
            "hidden": neural.hidden,
            "layers": neural.layers,
            "embedding_cap": neural.embedding_cap,
            "dropout": neural.dropout,
            "device": neural.device,
            "threads": neural.threads,
            "dp": dp,
            "dp_batch_size": neural.dp_batch_size,
            "dp_max_grad_norm": neural.dp_max_grad_norm,
            "secure_noise": neural.secure_noise,
            "bounds": dict(marginal.bounds),
            "labels": dict(marginal.labels),
            "min_count": config.min_category_count,
        }
    common = {
        "dp": dp,
        "bins": marginal.bins,
        "iters": marginal.iters,
        "domain_share": marginal.domain_share,
        "bounds": dict(marginal.bounds),
        "labels": dict(marginal.labels),
        "max_categories": marginal.max_categories,
        "min_count": config.min_category_count,
    }
    if choice.name == "aim":
        return {
            **common,
            "degree": marginal.degree,
            "max_cells": marginal.max_cells,
            "rounds": marginal.rounds,
            "max_model_size": marginal.max_model_size,
            "round_iters": marginal.round_iters,
        }
    if choice.name == "mst":
        return common
    if choice.name == "aim_stream":
        if ledger_path is None:
            raise ConfigError(["aim_stream reads the privacy ledger: give the scheduler the pipeline's ledger"])
        return {
            "ledger_path": ledger_path,
            "stream": stream,
            "last_windows": marginal.last_windows,
            "iters": marginal.iters,
        }
    if choice.name == "gaussian_copula":
        return {"min_count": config.min_category_count}
    return {}
