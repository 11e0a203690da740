"""Audit benchmark: privacy/quality audit time and the risks of our generators and SDV's, on Adult.

Data: UCI Adult (``adult_train_ctgan.csv``, ``?`` = null), split at random into disjoint
training, control and unseen sets of equal size (10,000 each; 5,000 with ``--quick``).
Every generator is fitted on the training set and sampled for 10,000 synthetic rows; the
same :class:`~synthstream.processors.auditor.Auditor` (the gate's default thresholds, target
and secret ``income``, plus secret ``marital-status``) audits each one against the control set.

* ours: every generator in ``synthstream.models.training.GENERATORS`` (today the Gaussian
  copula; AIM/MST and the neural model join when they are registered there). The copula's
  audit is repeated with different seeds and the median wall time is the headline number;
* peers (SDV 2.0, benchmark-only, BUSL-1.1): GaussianCopulaSynthesizer, CTGANSynthesizer and
  TVAESynthesizer with few epochs (CUDA when torch sees a GPU);
* references that calibrate the gate: ``replay_training`` (a leaky "generator" that replays
  training rows: must be rejected) and ``real_unseen`` (real records no model saw: what any
  real data reveals; must pass);
* the training buffer's cost per record without and with the holdout split.

Audit wall time is one worker, single-threaded (``n_jobs=1``), sampling included; quoted
as the median of repeats. Run: .venv/bin/python -m benchmarks.audit [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import dataset, machine, median, target, versions, write_result
from synthstream.config import AuditConfig
from synthstream.connectors.files import records_from_frame
from synthstream.models.training import GENERATORS, make_generator
from synthstream.processors.auditor import Auditor, AuditReport, warm_up_audit
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.record import RecordSchema
from tests.helpers import adult_schema

SYNTHETIC_ROWS = 10_000
Sampler = Callable[[int, int], pd.DataFrame]  # (rows, seed) -> synthetic frame


def load(n: int) -> tuple[RecordSchema, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(dataset("adult/adult_train_ctgan.csv"), skipinitialspace=True).replace("?", np.nan)
    schema = adult_schema(frame)
    order = np.random.default_rng(0).permutation(len(frame))
    parts = [frame.iloc[order[i * n : (i + 1) * n]].reset_index(drop=True) for i in range(3)]
    return schema, parts[0], parts[1], parts[2]


def audit_config(quick: bool) -> AuditConfig:
    return AuditConfig(
        target_field="income",
        secret_fields=["income", "marital-status"],
        synthetic_rows=SYNTHETIC_ROWS,
        n_attacks=500 if quick else 1_000,
    )


# ---------------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------------


def ours(name: str) -> Callable[[pd.DataFrame, RecordSchema, int], Sampler]:
    def fit(training: pd.DataFrame, schema: RecordSchema, seed: int) -> Sampler:
        model = make_generator(name, seed=seed).fit(records_from_frame(training, schema), schema)
        return lambda n, s: pd.DataFrame(model.sample_columns(n, seed=s))

    return fit


def sdv_peer(kind: str, epochs: int) -> Callable[[pd.DataFrame, RecordSchema, int], Sampler]:
    def fit(training: pd.DataFrame, schema: RecordSchema, seed: int) -> Sampler:
        import torch
        from sdv.metadata import Metadata
        from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

        torch.manual_seed(seed)
        np.random.seed(seed)
        metadata = Metadata.detect_from_dataframes({"adult": training})
        if kind == "gaussian_copula":
            synthesizer: Any = GaussianCopulaSynthesizer(metadata)
        elif kind == "ctgan":
            synthesizer = CTGANSynthesizer(metadata, epochs=epochs, enable_gpu=torch.cuda.is_available())
        else:
            synthesizer = TVAESynthesizer(metadata, epochs=epochs, enable_gpu=torch.cuda.is_available())
        synthesizer.fit({"adult": training})

        def sample(n: int, s: int) -> pd.DataFrame:
            np.random.seed(s)
            torch.manual_seed(s)
            out = synthesizer.sample(n)
            return out["adult"] if isinstance(out, dict) else out

        return sample

    return fit


def replay(training: pd.DataFrame, schema: RecordSchema, seed: int) -> Sampler:
    return lambda n, s: training.sample(n, replace=True, random_state=s).reset_index(drop=True)


def real_unseen(unseen: pd.DataFrame) -> Callable[[pd.DataFrame, RecordSchema, int], Sampler]:
    return lambda training, schema, seed: lambda n, s: unseen.sample(min(n, len(unseen)), random_state=s)


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------


def summary(report: AuditReport) -> dict[str, Any]:
    keep = (
        "singling_out_univariate",
        "singling_out_multivariate",
        "linkability",
        "inference:income",
        "inference:marital-status",
        "dcr_share",
        "identical_match_excess",
        "nndr_median",
    )
    out: dict[str, Any] = {"verdict": report.verdict}
    out.update({k: round(report.risks[k], 4) for k in keep if k in report.risks})
    out.update(
        {k: round(v, 4) for k, v in report.quality.items() if k in ("column_shapes", "pair_trends", "tstr_ratio")}
    )
    out["attacks_built"] = f"{report.attacks_built}/{report.attacks_requested}"
    return out


def run_one(
    name: str,
    fit: Callable[[pd.DataFrame, RecordSchema, int], Sampler],
    data: tuple[RecordSchema, pd.DataFrame, pd.DataFrame, pd.DataFrame],
    auditor: Auditor,
    repeats: int,
) -> dict[str, Any]:
    schema, training, control, _ = data
    print(f"[audit bench] {name}: fitting", flush=True)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = fit(training, schema, 0)
    except Exception as exc:  # a generator that cannot fit is reported, not fatal
        return {"error": f"fit failed: {type(exc).__name__}: {exc}"}
    fit_s = time.perf_counter() - started
    walls, reports = [], []
    for seed in range(1, repeats + 1):
        started = time.perf_counter()
        synthetic = sample(SYNTHETIC_ROWS, seed)
        sample_s = time.perf_counter() - started
        report = auditor.audit(training, control, synthetic, seed=seed)
        walls.append(time.perf_counter() - started)
        reports.append(report)
        print(f"[audit bench] {name}: audit {seed} {walls[-1]:.1f} s {report.verdict}", flush=True)
    first = reports[0]
    verdicts = [r.verdict for r in reports]
    risk_spread = {
        k: [round(r.risks[k], 4) for r in reports] for k in first.risks if all(k in r.risks for r in reports)
    }
    return {
        "fit_s": round(fit_s, 2),
        "sample_s": round(sample_s, 3),
        "audit_wall_s": [round(w, 2) for w in walls],
        "audit_wall_s_median": round(median(walls), 2),
        "stage_s": {k: round(v, 2) for k, v in first.seconds.items()},
        "verdicts": verdicts,
        "summary": summary(first),
        "reasons": first.reasons,
        "attacks": [a.model_dump() for a in first.attacks],
        "risks": {k: round(v, 4) for k, v in first.risks.items()},
        "quality": {k: round(v, 4) for k, v in first.quality.items()},
        "risks_over_repeats": risk_spread if repeats > 1 else {},
    }


def buffer_cost(repeats: int) -> dict[str, float]:
    """Nanoseconds per record of ``TrainingBuffer.extend`` in 2,000-record batches (the ingest path)."""
    batch = [{"age": i, "workclass": "Private", "fnlwgt": 1.5} for i in range(2_000)]
    out = {}
    for label, share in (("no_holdout", 0.0), ("holdout_0.2", 0.2)):
        costs = []
        for _ in range(repeats):
            buffer = TrainingBuffer(20_000, holdout_share=share, holdout_max=10_000, seed=0)
            started = time.perf_counter()
            for _ in range(250):
                buffer.extend(batch)
            costs.append((time.perf_counter() - started) / (250 * len(batch)) * 1e9)
        out[f"{label}_ns_per_record"] = round(statistics.median(costs), 1)
    return out


def main(quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 10_000
    data = load(n)
    schema = data[0]
    config = audit_config(quick)
    auditor = Auditor(schema, config)
    started = time.perf_counter()
    warm_up_audit()
    warm_s = time.perf_counter() - started
    epochs = 1 if quick else 5
    repeats = 1 if quick else 3

    our_results = {name: run_one(name, ours(name), data, auditor, repeats) for name in GENERATORS}
    peers = {
        "sdv_gaussian_copula": run_one("sdv_gaussian_copula", sdv_peer("gaussian_copula", 0), data, auditor, 1),
        f"sdv_ctgan_{epochs}_epochs": run_one("sdv_ctgan", sdv_peer("ctgan", epochs), data, auditor, 1),
        f"sdv_tvae_{epochs}_epochs": run_one("sdv_tvae", sdv_peer("tvae", epochs), data, auditor, 1),
    }
    references = {
        "replay_training": run_one("replay_training", replay, data, auditor, 1),
        "real_unseen": run_one("real_unseen", real_unseen(data[3]), data, auditor, 1),
    }
    buffer = buffer_cost(3 if quick else 7)
    copula = our_results["gaussian_copula"]
    side_by_side = {
        name: result.get("summary", result) for name, result in {**our_results, **peers, **references}.items()
    }
    result: dict[str, Any] = {
        "machine": machine(),
        "versions": versions("synthstream", "anonymeter", "sdv", "scikit-learn", "polars", "numba", "torch"),
        "mode": "quick" if quick else "full",
        "setup": {
            "dataset": "UCI Adult adult_train_ctgan.csv",
            "training_rows": n,
            "control_rows": n,
            "synthetic_rows": SYNTHETIC_ROWS,
            "audit_config": config.model_dump(mode="json"),
            "audit_warm_up_s": round(warm_s, 2),
            "repeats_ours": repeats,
            "sdv_epochs": epochs,
        },
        "side_by_side": side_by_side,
        "ours": {**our_results, "buffer": buffer},
        "peers": peers,
        "references": references,
        "targets": {
            "audit_wall_s_10k_synthetic": target(60.0, copula["audit_wall_s_median"], higher_is_better=False),
            "replay_training_rejected": target(1.0, float(references["replay_training"]["verdicts"][0] == "fail")),
            "real_unseen_passes": target(1.0, float(references["real_unseen"]["verdicts"][0] == "pass")),
            "gaussian_copula_passes": target(1.0, float(all(v == "pass" for v in copula["verdicts"]))),
            "buffer_holdout_ns_per_record": target(500.0, buffer["holdout_0.2_ns_per_record"], higher_is_better=False),
        },
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000-row splits, 500 attacks, 1 epoch, 1 repeat.")
    args = parser.parse_args()
    res = main(args.quick)
    path = write_result("audit", res)
    print(json.dumps({"side_by_side": res["side_by_side"], "targets": res["targets"]}, indent=2, default=str))
    print(f"wrote {path}")
