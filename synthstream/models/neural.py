"""Our neural tabular generator: a column-autoregressive network over tokens, optionally trained with DP-SGD.

Every modelled field becomes a token column (:mod:`synthstream.models.encoding`): exact
values when a field has at most ``max_exact`` distinct values, otherwise up to ``bins`` quantile
bins (at least :data:`ROWS_PER_BIN` rows each, so 16 bins on 1,600 rows) decoded through a
per-bin quantile grid; categories most frequent first (beyond
``max_categories`` they fold into the kept ones); a null is one more token. Only values
held by at least ``min_count`` records become tokens and numeric grids are clipped to
supported quantiles (:mod:`synthstream.models.guards`): the pickled model holds no rare
training value. The network
(:class:`~synthstream.models.neural_nn.ColumnAR`) learns ``p(x_j | x_<j)`` for every column
with a small MLP head over the embeddings of the columns before it, in the spirit of
TabularARGN (Tiwald et al. 2025). Identifiers and free text are generated without reading
the data (:class:`~synthstream.models.encoding.SideFields`).

Why this model: measured with ``benchmarks/tabular.py`` on Adult (train 32,561 rows ->
evaluated against the 16,281-row test split; see :data:`MEASURED`), the autoregressive
model beat a TVAE-style VAE we tried on the same encoding, and SDV's CTGAN/TVAE at the
same epoch budget, on SDMetrics quality (column shapes and pair trends) and on TSTR F1.
An autoregressive factorisation has no mode collapse and no reconstruction/KL trade-off:
each conditional is a plain softmax, so rare combinations keep their probability.

DP-SGD (``dp=DPContext``): opacus with Poisson sampling and per-sample clipping; the noise
multiplier is calibrated so the stream's **composed** model ε (all earlier fits from the
ledger, plus this one) grows by at most ``epsilon_per_fit`` and never passes the budget
(:mod:`synthstream.models.dp_budget`). The fit is appended to the ledger's DP-SGD history,
so warm-start retrains and restarts continue the accountant; it is never reset. In DP
mode the token domains are DP too: taken from the stream's released domains when the
ledger has them (free), otherwise learned with OpenDP quantiles and a DP threshold (charged
with the fit); numeric tokens then decode uniformly inside their bins. DP-SGD noise comes
from torch's generator: seeded from the OS (``secure_noise=True``, the default) or from
``seed`` for reproducible tests.

Warm start (``fit(..., warm_start=previous)``): the previous model's token codecs and
weights are kept and trained ``warm_start_epochs`` more on the new data.

Contracts: the same seed and data give the same model and samples on CPU; unseeded
``sample`` calls continue one random stream; the object pickles with its weights on CPU;
CUDA is used when ``torch.cuda.is_available()`` unless ``device="cpu"``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch

from synthstream.errors import ModelError, NotFittedError
from synthstream.log import get_logger
from synthstream.models.dependencies import apply_dependencies, find_dependencies
from synthstream.models.dp_budget import DPContext, ModelAccountant
from synthstream.models.dp_domain import DomainPlan, check_domains, learn_attributes, ledger_attributes
from synthstream.models.encoding import (
    ColumnCodec,
    SideFields,
    codec_from_attribute,
    column_frame,
    encode_frame,
    fit_codec,
    modelled_fields,
    token_positions,
)
from synthstream.models.guards import DEFAULT_MIN_COUNT, check_min_count
from synthstream.models.neural_nn import ColumnAR
from synthstream.models.params import check_float, check_int
from synthstream.models.resolution import apply_decimals, apply_resolution, learn_decimals, learn_resolution
from synthstream.privacy.accounting import Spend
from synthstream.privacy.ledger import BudgetExceeded, Release
from synthstream.schemas.record import RecordSchema

__all__ = ["MEASURED", "MIN_BINS", "ROWS_PER_BIN", "NeuralGenerator", "Progress"]

#: Fewest rows per numeric quantile bin (non-DP fits), and the fewest bins that rule leaves.
ROWS_PER_BIN = 100
MIN_BINS = 16

Device = Literal["auto", "cpu", "cuda"]
#: Called with (fraction done in [0, 1], what is happening); must be cheap.
Progress = Callable[[float, str], None]

#: Measured by ``benchmarks/tabular.py`` (Adult; filled from the run that chose the design).
MEASURED: dict[str, dict[str, float]] = {}

_SAMPLE_CHUNK = 65_536
_log = get_logger("models.neural")


class NeuralGenerator:
    """Column-autoregressive neural generator, optionally DP-SGD (see the module docstring).

    Examples
    --------
    >>> NeuralGenerator(seed=1, epochs=5)
    NeuralGenerator(seed=1, epochs=5, hidden=64, layers=1, dp=False, device='auto')

    """

    name: ClassVar[str] = "neural"

    def __init__(
        self,
        seed: int = 0,
        *,
        epochs: int = 30,
        warm_start_epochs: int = 10,
        batch_size: int = 512,
        learning_rate: float = 3e-3,
        hidden: int = 64,
        layers: int = 1,
        embedding_cap: int = 12,
        dropout: float = 0.0,
        max_exact: int = 128,
        bins: int = 64,
        max_categories: int = 256,
        device: Device = "auto",
        dp: DPContext | None = None,
        dp_batch_size: int = 1_024,
        dp_max_grad_norm: float = 1.0,
        dp_bins: int = 32,
        dp_domain_share: float = 0.1,
        secure_noise: bool = True,
        threads: int | None = 1,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        labels: Mapping[str, Sequence[str]] | None = None,
        min_count: int = DEFAULT_MIN_COUNT,
        min_steps: int = 500,
        max_epochs: int = 100,
        validation_share: float = 0.0,
        patience: int = 4,
    ) -> None:
        self.seed = check_int("seed", seed, 0, 2**63 - 1)
        self.epochs = check_int("epochs", epochs, 1, 100_000)
        self.warm_start_epochs = check_int("warm_start_epochs", warm_start_epochs, 1, 100_000)
        self.batch_size = check_int("batch_size", batch_size, 1, 1_000_000)
        self.learning_rate = check_float("learning_rate", learning_rate, 1e-7, 10.0)
        self.hidden = check_int("hidden", hidden, 2, 65_536)
        self.layers = check_int("layers", layers, 1, 16)
        self.embedding_cap = check_int("embedding_cap", embedding_cap, 2, 1024)
        self.dropout = check_float("dropout", dropout, 0.0, 0.9)
        self.max_exact = check_int("max_exact", max_exact, 1, 100_000)
        self.bins = check_int("bins", bins, 1, 100_000)
        self.max_categories = check_int("max_categories", max_categories, 1, 1_000_000)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be one of auto, cpu, cuda; got {device!r}")
        self.device: Device = device
        self.dp = dp
        self.dp_batch_size = check_int("dp_batch_size", dp_batch_size, 1, 1_000_000)
        self.dp_max_grad_norm = check_float("dp_max_grad_norm", dp_max_grad_norm, 1e-6, 1e6)
        self.dp_bins = check_int("dp_bins", dp_bins, 1, 10_000)
        self.dp_domain_share = check_float("dp_domain_share", dp_domain_share, 0.0, 0.9)
        self.secure_noise = bool(secure_noise)
        self.threads = None if threads is None else check_int("threads", threads, 1, 1024)
        self.bounds = dict(bounds or {})
        self.labels = {k: list(v) for k, v in (labels or {}).items()}
        self.min_count = check_min_count(min_count)
        self.min_steps = check_int("min_steps", min_steps, 0, 10_000_000)
        self.max_epochs = check_int("max_epochs", max_epochs, 1, 100_000)
        self.validation_share = check_float("validation_share", validation_share, 0.0, 0.5)
        self.patience = check_int("patience", patience, 1, 1_000)
        self._schema: RecordSchema | None = None
        self._codecs: list[ColumnCodec] = []
        self._side: SideFields | None = None
        self._net: ColumnAR | None = None
        self._rng = np.random.default_rng(seed)
        self._device_net: tuple[str, ColumnAR] | None = None
        self.rows_ = 0
        self.history_: list[dict[str, float]] = []
        self.dp_spend_: dict[str, Any] | None = None
        self.device_used_: str = ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(seed={self.seed}, epochs={self.epochs}, hidden={self.hidden}, "
            f"layers={self.layers}, dp={self.dp is not None}, device={self.device!r})"
        )

    # -- protocol ------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has completed."""
        return self._schema is not None and self._net is not None

    @property
    def schema(self) -> RecordSchema | None:
        """The schema the generator was fitted on, ``None`` before fit."""
        return self._schema

    @property
    def codecs(self) -> list[ColumnCodec]:
        """The token codecs of the modelled fields, in model order."""
        return list(self._codecs)

    def _torch_device(self) -> torch.device:
        if self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise ModelError("device='cuda' but torch sees no CUDA device")
            return torch.device("cuda")
        return torch.device("cpu")

    # -- fitting -------------------------------------------------------------------------------

    def fit(
        self,
        records: Sequence[Mapping[str, Any]] | pd.DataFrame,
        schema: RecordSchema,
        *,
        warm_start: NeuralGenerator | None = None,
        progress: Progress | None = None,
    ) -> Self:
        """Train on ``records``; with ``warm_start`` continue that model (same schema) instead of starting cold.

        DP mode charges the fit to the ledger; :class:`~synthstream.privacy.ledger.BudgetExceeded`
        when the stream's model budget cannot afford it.
        """
        frame = column_frame(records, schema)
        if len(frame) == 0:
            raise ModelError("cannot fit a generator on zero records")
        if warm_start is not None:
            if warm_start.schema is None or warm_start._net is None:
                raise ModelError("warm_start must be a fitted NeuralGenerator")
            if warm_start.schema.fingerprint() != schema.fingerprint():
                raise ModelError("warm_start was fitted on a different schema; train cold instead")
            if (warm_start.dp is None) != (self.dp is None):
                raise ModelError("warm_start must have the same DP setting (a non-DP model cannot continue under DP)")
        report = progress or (lambda fraction, detail: None)
        fields = modelled_fields(schema)
        domain_releases: list[Release] = []
        domain_rho = 0.0
        domain_delta = 0.0
        if warm_start is not None:
            codecs = list(warm_start._codecs)
        elif self.dp is not None:
            codecs, domain_releases = self._dp_codecs(frame, fields)
            domain_rho = sum(r.spend.rho for r in domain_releases)
            domain_delta = sum(r.spend.delta for r in domain_releases)
        else:
            codecs = [
                fit_codec(
                    f,
                    frame[f.name],
                    max_exact=self.max_exact,
                    bins=self.bins_for(len(frame)),
                    max_categories=self.max_categories,
                    min_count=self.min_count,
                )
                for f in fields
            ]
        tokens = torch.as_tensor(encode_frame(codecs, frame), dtype=torch.long)
        device = self._torch_device()
        epochs = self.warm_start_epochs if warm_start is not None else self.epochs
        report(0.0, "encoded")
        with _threads(self.threads), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            net = self._build_net([c.size for c in codecs], [token_positions(c) for c in codecs])
            if warm_start is not None:
                assert warm_start._net is not None
                net.load_state_dict(warm_start._net.state_dict())
            net = net.to(device)
            generator = torch.Generator(device=device).manual_seed(self.seed)
            if tokens.shape[1] == 0:
                history: list[dict[str, float]] = []
            elif self.dp is not None:
                history = self._train_dp(
                    net, tokens.to(device), epochs, generator, report, domain_rho, domain_delta, domain_releases
                )
            else:
                history = self._train_plain(
                    net, tokens.to(device), epochs, generator, report, warm=warm_start is not None
                )
        net = net.to("cpu").eval()
        self._codecs = codecs
        self._net = net
        self._device_net = None
        # Free text is learned (k-supported tokens) only without DP: DP-SGD covers nothing read outside it.
        self._side = SideFields(schema, frame if self.dp is None else None, min_count=self.min_count)
        # Exact code/label pairs are rewritten after sampling; not under DP (the rule is read without noise).
        self.dependencies_ = find_dependencies(frame, schema, min_count=self.min_count) if self.dp is None else []
        self.time_steps_ = learn_resolution(frame, schema)
        self.decimals_ = learn_decimals(frame, schema)  # 0.1 mm stays 0.1 mm
        self._schema = schema
        self.rows_ = len(frame)
        self.history_ = history
        self.device_used_ = device.type
        self._rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(1)[0])
        report(1.0, "trained")
        return self

    def _build_net(self, sizes: Sequence[int], positions: Sequence[Sequence[float] | None] | None = None) -> ColumnAR:
        return ColumnAR(
            sizes,
            hidden=self.hidden,
            layers=self.layers,
            embedding_cap=self.embedding_cap,
            dropout=self.dropout,
            positions=positions,
        )

    def _dp_codecs(self, frame: pd.DataFrame, fields: Sequence[Any]) -> tuple[list[ColumnCodec], list[Release]]:
        """DP token domains: the stream's released ones when the ledger has them all, else learned (charged)."""
        assert self.dp is not None
        context = self.dp
        if self._fit_target() <= 0:  # refuse before learning anything from the data
            detail = f"the model budget epsilon={context.epsilon:g} is spent"
            context.ledger().record_refusal(context.stream, context.scope, context.unit, None, Spend(), detail)
            raise BudgetExceeded(context.stream, context.scope, context.unit, None, detail)
        ledger = context.ledger()
        recorded = ledger.domains(self.dp.stream)
        if all(f.name in recorded for f in fields):
            attributes, points = ledger_attributes(ledger, self.dp.stream, fields)
            return [
                codec_from_attribute(f, a, points.get(f.name, ())) for f, a in zip(fields, attributes, strict=True)
            ], []
        target = self._fit_target()
        domain_rho = _rho_for(target * self.dp_domain_share, self.dp.delta)
        plan = DomainPlan(
            fields,
            bins=self.dp_bins,
            bounds=self.bounds,
            labels=self.labels,
            max_categories=self.max_categories,
            min_count=self.min_count,
        )
        domain_delta = self.dp.delta / 100 if plan.learned else 0.0
        attributes, points, releases = learn_attributes(frame, plan, rho=domain_rho, delta=domain_delta)
        check_domains(fields, attributes)
        return [
            codec_from_attribute(f, a, points.get(f.name, ())) for f, a in zip(fields, attributes, strict=True)
        ], releases

    def _fit_target(self) -> float:
        """The ε this fit may add, given the stream's history (capped by what is left)."""
        assert self.dp is not None
        return min(self.dp.epsilon_per_fit, max(0.0, self.dp.epsilon - self.dp.accountant().epsilon(self.dp.delta)))

    def _batches(self, n: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
        perm = torch.randperm(n, generator=generator, device=device)
        return [perm[i : i + self.batch_size] for i in range(0, n, self.batch_size)]

    def bins_for(self, rows: int) -> int:
        """Quantile bins of a numeric field fitted on ``rows`` rows: ``bins``, fewer on small tables.

        With 64 bins on 1,600 rows (25 rows a bin) the network memorised bin-level detail before it
        learned the relations between fields (validation loss 13.5 vs training 9.6; a 0.89 rank
        correlation came out 0.65); at :data:`ROWS_PER_BIN` rows a bin it came out 0.87.
        """
        return max(1, min(self.bins, max(MIN_BINS, rows // ROWS_PER_BIN)))

    def _plain_epochs(self, rows: int, epochs: int) -> int:
        """Epochs of a plain fit: ``epochs``, raised on small tables to ``min_steps`` optimizer steps.

        A fixed epoch count gives a 1,600-row table 4 steps an epoch: 30 epochs (120 steps) turned a
        0.89 rank correlation into 0.75; 500 steps kept 0.87 (and Adult-4k accuracy 0.976 -> 0.978).
        Validation early stopping (``validation_share`` > 0) was measured worse: its best checkpoint
        came in the one-cycle schedule's high-rate phase, before the annealing that helps most.
        The raise stops at ``max_epochs`` passes over the data: a table smaller than one batch got
        500 full passes and memorised it (distance-to-closest-record share vs a holdout, 500 -> 100
        epochs: palmerpenguins 240 rows 0.727 -> 0.571, carData Salaries 277 rows 0.686 -> 0.639,
        HMDA 1,523 rows 0.546 -> 0.518 at the same TSTR 0.687 and SDMetrics quality).
        """
        per_epoch = max(1, math.ceil(rows / self.batch_size))
        return max(1, min(max(epochs, math.ceil(self.min_steps / per_epoch)), max(epochs, self.max_epochs)))

    def _train_plain(
        self,
        net: ColumnAR,
        tokens: torch.Tensor,
        epochs: int,
        generator: torch.Generator,
        report: Progress,
        *,
        warm: bool = False,
    ) -> list[dict[str, float]]:
        """Adam with a one-cycle schedule over the whole fit.

        A cold fit runs at least ``min_steps`` optimizer steps (:meth:`_plain_epochs`); a warm
        start runs exactly its ``epochs`` (it continues a trained model). Opt-in early stopping
        (``validation_share`` > 0, at least 100 rows held out): checked once per epoch or per 25
        steps, training stops after ``patience`` checks without improvement and the weights of
        the best validation loss are kept.
        """
        n_all = tokens.shape[0]
        order = torch.randperm(n_all, generator=generator, device=tokens.device)
        n_val = int(n_all * self.validation_share)
        if n_val < 100:
            n_val = 0
        val, tokens = tokens[order[:n_val]], tokens[order[n_val:]]
        n = tokens.shape[0]
        per_epoch = math.ceil(n / self.batch_size)
        epochs = epochs if warm else self._plain_epochs(n, epochs)  # a warm start continues a trained model
        steps = epochs * per_epoch
        check_every = max(1, math.ceil(25 / per_epoch))  # epochs between validation checks
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate, foreach=True)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.learning_rate, total_steps=max(steps, 1), pct_start=0.1
        )
        history: list[dict[str, float]] = []
        best: tuple[float, dict[str, torch.Tensor]] | None = None
        stale = 0
        net.train()
        for epoch in range(epochs):
            total, count = 0.0, 0
            for idx in self._batches(n, generator, tokens.device):
                loss = net(tokens[idx]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            entry = {"epoch": float(epoch + 1), "loss": total / max(count, 1)}
            if n_val and ((epoch + 1) % check_every == 0 or epoch + 1 == epochs):
                net.eval()
                with torch.no_grad():
                    val_loss = float(net(val).mean())
                net.train()
                entry["val_loss"] = val_loss
                if best is None or val_loss < best[0] - 1e-4:
                    best = (val_loss, {k: v.detach().clone() for k, v in net.state_dict().items()})
                    stale = 0
                else:
                    stale += 1
            history.append(entry)
            report((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}")
            if stale >= self.patience:
                break
        if best is not None:
            net.load_state_dict(best[1])
        net.eval()
        return history

    def _train_dp(
        self,
        net: ColumnAR,
        tokens: torch.Tensor,
        epochs: int,
        generator: torch.Generator,
        report: Progress,
        domain_rho: float,
        domain_delta: float,
        domain_releases: Sequence[Release],
    ) -> list[dict[str, float]]:
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        assert self.dp is not None
        context = self.dp
        accountant = context.accountant()
        if accountant.ledger.key_spend(context.stream, context.scope, context.unit, context.key) is not None:
            raise ModelError(f"DP-SGD fit key {context.key!r} was already charged: give the retry a new key")
        n = tokens.shape[0]
        sample_rate = min(1.0, self.dp_batch_size / n)
        steps = max(1, round(epochs / sample_rate))
        before = accountant.epsilon(context.delta)
        target = min(before + context.epsilon_per_fit, context.epsilon)
        accountant.check(context, rho=domain_rho, delta=domain_delta)  # the domains alone must fit
        try:
            sigma = _calibrate(accountant, context, sample_rate, steps, target, domain_rho, domain_delta)
        except ValueError:
            detail = f"no DP-SGD noise keeps the model epsilon within {target:.4g} (budget {context.epsilon:.4g})"
            accountant.ledger.record_refusal(context.stream, context.scope, context.unit, None, Spend(), detail)
            raise BudgetExceeded(context.stream, context.scope, context.unit, None, detail) from None
        noise = torch.Generator(device=tokens.device)
        noise.manual_seed(int.from_bytes(os.urandom(8), "little") if self.secure_noise else self.seed + 1)
        # Poisson sampling draws on the CPU (DataLoader samplers need a CPU generator); batches move to the device.
        device = tokens.device
        sampler = torch.Generator().manual_seed(self.seed) if device.type != "cpu" else generator
        loader = DataLoader(TensorDataset(tokens.cpu()), batch_size=self.dp_batch_size, generator=sampler)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        with warnings.catch_warnings():
            # opacus warns that its own CSPRNG is off: the noise comes from `noise`, seeded from the OS above.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private(
            module=net,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=self.dp_max_grad_norm,
            noise_generator=noise,
            poisson_sampling=True,
        )
        history = []
        model.train()
        done = 0
        per_epoch = max(1, round(1 / sample_rate))
        epoch = 0
        while done < steps:
            total, count = 0.0, 0
            for (batch,) in loader:
                if done >= steps:
                    break
                optimizer.zero_grad(set_to_none=True)
                if batch.shape[0] > 0:
                    loss = model(batch.to(device, non_blocking=True)).mean()
                    with warnings.catch_warnings():
                        # Token indices never require gradients; opacus' hooks fire on the weights all the same.
                        warnings.filterwarnings("ignore", message="Full backward hook is firing")
                        loss.backward()
                    total += float(loss.detach()) * batch.shape[0]
                    count += batch.shape[0]
                optimizer.step()  # an empty Poisson batch still releases noise: it is a step
                done += 1
                if done % per_epoch == 0:
                    report(min(done / steps, 1.0), f"step {done}/{steps}")
            epoch += 1
            history.append({"epoch": float(epoch), "loss": total / max(count, 1)})
        model.remove_hooks()
        after = accountant.refresh().epsilon(
            context.delta, extra_rho=domain_rho, extra_delta=domain_delta, extra_sgd=[(sigma, sample_rate, done)]
        )
        ledger = accountant.ledger
        if domain_releases:
            ledger.charge(
                stream=context.stream,
                scope=context.scope,
                unit=context.unit,
                releases=domain_releases,
                budget=None,
                key=f"{context.key}:domains",
            )
        ledger.charge_dpsgd(
            stream=context.stream,
            scope=context.scope,
            unit=context.unit,
            key=context.key,
            noise_multiplier=sigma,
            sample_rate=sample_rate,
            steps=done,
            release=Release(
                "dpsgd:fit",
                "dpsgd",
                Spend(epsilon=max(0.0, after - before)),
                self.dp_max_grad_norm,
                sigma * self.dp_max_grad_norm,
            ),
        )
        self.dp_spend_ = {
            "epsilon_total": after,
            "epsilon_before": before,
            "delta": context.delta,
            "noise_multiplier": sigma,
            "sample_rate": sample_rate,
            "steps": float(done),
            "max_grad_norm": self.dp_max_grad_norm,
            "unit": context.unit,
        }
        # Per-sample gradient buffers are not part of the model: keep a plain copy of the weights.
        plain = self._build_net(net.sizes, net.positions)
        plain.load_state_dict({k: v.detach().to("cpu") for k, v in net.state_dict().items()})
        net.load_state_dict(plain.state_dict())
        return history

    # -- sampling ------------------------------------------------------------------------------

    def _sampling_net(self) -> tuple[ColumnAR, torch.device]:
        assert self._net is not None
        device = self._torch_device()
        if device.type == "cpu":
            return self._net, device
        if self._device_net is None or self._device_net[0] != str(device):
            self._device_net = (str(device), copy.deepcopy(self._net).to(device).eval())
        return self._device_net[1], device

    def sample_columns(self, n: int, *, seed: int | None = None) -> dict[str, list[Any]]:
        """``n`` synthetic rows as ``{field: values}`` (canonical values; the fast path)."""
        if self._schema is None or self._net is None or self._side is None:
            raise NotFittedError(f"{type(self).__name__} must be fitted before sampling")
        check_int("n", n, 0, 2**40)
        if seed is not None:
            check_int("seed", seed, 0, 2**63 - 1)
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        net, device = self._sampling_net()
        generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
        parts = []
        with _threads(self.threads):
            for start in range(0, n, _SAMPLE_CHUNK):
                size = min(_SAMPLE_CHUNK, n - start)
                chunk = (
                    net.sample(size, generator, device).cpu().numpy() if self._codecs else np.zeros((size, 0), np.int64)
                )
                parts.append(chunk)
        tokens = np.concatenate(parts) if parts else np.zeros((0, len(self._codecs)), dtype=np.int64)
        decoded = {codec.name: codec.decode(tokens[:, j], rng) for j, codec in enumerate(self._codecs)}
        decoded.update(self._side.sample(n, rng))
        columns = {name: decoded[name] for name in self._schema.field_names}
        apply_resolution(columns, getattr(self, "time_steps_", {}))  # models pickled before: unrounded
        apply_decimals(columns, getattr(self, "decimals_", {}))
        return apply_dependencies(columns, getattr(self, "dependencies_", []), self._schema)

    def sample(self, n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
        """``n`` synthetic records (dicts keyed by field name)."""
        columns = self.sample_columns(n, seed=seed)
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    # -- pickling ------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_device_net"] = None
        net = state.pop("_net")
        buffer = io.BytesIO()
        if net is not None:
            torch.save(
                {
                    "sizes": net.sizes,
                    "positions": net.positions,
                    "state": {k: v.cpu() for k, v in net.state_dict().items()},
                },
                buffer,
            )
        state["_net_bytes"] = buffer.getvalue() if net is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        payload = state.pop("_net_bytes")
        self.__dict__.update(state)
        self._net = None
        if payload is not None:
            stored = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
            net = self._build_net(stored["sizes"], stored.get("positions"))  # none before positions existed
            net.load_state_dict(stored["state"])
            self._net = net.eval()


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads, restoring the process setting afterwards.

    One thread is the default: on the 2-core CI machine, shared with ingest and other work, a
    training step took 21 ms with one thread and 127 ms with two (OpenMP threads spin-waiting
    for a busy core); sampling speed was the same.
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rho_for(epsilon: float, delta: float) -> float:
    from synthstream.privacy.accounting import epsilon_to_rho

    return epsilon_to_rho(epsilon, delta) if epsilon > 0 else 0.0


def _calibrate(
    accountant: ModelAccountant,
    context: DPContext,
    sample_rate: float,
    steps: int,
    target: float,
    extra_rho: float,
    extra_delta: float,
) -> float:
    """Smallest noise multiplier keeping history + domains + this fit at most ``target``."""

    def after(sigma: float) -> float:
        return accountant.epsilon(
            context.delta, extra_rho=extra_rho, extra_delta=extra_delta, extra_sgd=[(sigma, sample_rate, steps)]
        )

    if target <= 0 or after(1e4) > target:
        raise ValueError("target unreachable")
    lo, hi = 0.3, 1.0
    while after(hi) > target:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if after(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
