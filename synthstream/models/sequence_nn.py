"""The torch network behind :class:`~synthstream.models.sequence.SequenceGenerator`.

One step of an entity's sequence is modelled as

* a **backbone** (GRU, or a causal temporal convolution) reads, per step, the previous
  event's encoding, a start flag, the inter-arrival time that led to this step, the time
  features of this step (hour, weekday, season as sin/cos) and the entity's static
  attributes; the GRU's initial state is also a function of the static attributes;
* a **field-autoregressive head** (one small MLP per field, batched with masked weights as
  in MADE) emits the distribution of the current event's fields in schema order, each
  conditioned on the backbone state, the time features and the fields before it. This
  keeps the within-step dependence between fields (PM2.5 and PM10 move together) that an
  independent-output head loses. Numeric fields are mixtures of Gaussians over normal
  scores with a missingness logit before them; categorical fields are softmax outputs;
* a **delta head** emits the distribution of the next inter-arrival time (normal score,
  mixture of Gaussians) from the backbone state and the current event.

Everything here is data-layout only: the encoders that turn records into these tensors
and back live in :mod:`synthstream.models.sequence`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 - the conventional torch alias

__all__ = ["TIME_FEATURES", "FieldLayout", "SequenceNet"]

TIME_FEATURES = 6  # sin/cos of hour-of-day, day-of-week and day-of-year
Backbone = Literal["gru", "tcn"]
_LOG_2PI = math.log(2.0 * math.pi)
_MIN_LOG_SCALE = -7.0


@dataclass(frozen=True)
class FieldLayout:
    """Where one dynamic field sits in the encoded input and in the head's output.

    ``kind`` is ``numeric`` (normal score, optional missing indicator) or ``categorical``
    (one-hot of ``n_categories``; a null is one of the categories).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    nullable: bool = False
    n_categories: int = 0

    @property
    def in_dim(self) -> int:
        """Width of the field's block in the encoded event."""
        if self.kind == "categorical":
            return self.n_categories
        return 2 if self.nullable else 1

    def out_dim(self, components: int) -> int:
        """Width of the field's block in the head's output."""
        if self.kind == "categorical":
            return self.n_categories
        return 3 * components + (1 if self.nullable else 0)


def _mixture_nll(params: Tensor, target: Tensor) -> Tensor:
    """Negative log-likelihood of ``target`` (...) under mixtures ``params`` (..., 3K)."""
    logits, mean, log_scale = params.chunk(3, dim=-1)
    log_scale = log_scale.clamp(min=_MIN_LOG_SCALE)
    z = (target.unsqueeze(-1) - mean) * torch.exp(-log_scale)
    log_prob = -0.5 * (z * z + _LOG_2PI) - log_scale
    return -torch.logsumexp(F.log_softmax(logits, dim=-1) + log_prob, dim=-1)


def _mixture_sample(params: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of mixtures ``params`` (B, 3K)."""
    logits, mean, log_scale = params.chunk(3, dim=-1)
    component = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
    mu = mean.gather(-1, component).squeeze(-1)
    sigma = torch.exp(log_scale.clamp(min=_MIN_LOG_SCALE).gather(-1, component).squeeze(-1))
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + sigma * noise


class _Constants(nn.Module):
    """A module whose constant tensors (masks, index maps) follow ``.to(device)`` without being buffers.

    Opacus refuses trainable layers that hold buffers (their state would not be private);
    masks and index maps are not data-dependent state, so they live here as plain tensors
    that :meth:`_apply` moves along with the parameters. They are rebuilt from the layout
    on construction, so they are not in the state dict either.
    """

    def _constant(self, name: str, value: Tensor) -> None:
        names: list[str] = self.__dict__.setdefault("_constant_names", [])
        if name not in names:
            names.append(name)
        object.__setattr__(self, name, value)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        result = super()._apply(fn, recurse)
        for name in self.__dict__.get("_constant_names", []):
            object.__setattr__(self, name, fn(getattr(self, name)))
        return result


class _GruBackbone(nn.Module):
    """A GRU whose initial state comes from the static attributes."""

    def __init__(self, in_dim: int, static_dim: int, hidden: int, layers: int, *, dp: bool) -> None:
        super().__init__()
        self.layers = layers
        self.hidden = hidden
        self.init = nn.Linear(max(static_dim, 1), hidden * layers)
        if dp:
            from opacus.layers import DPGRU  # per-sample gradients need opacus' GRU built from linear layers

            self.rnn: nn.Module = DPGRU(in_dim, hidden, num_layers=layers, batch_first=True)
        else:
            self.rnn = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True)

    def initial(self, static: Tensor) -> Tensor:
        """Initial hidden state (layers, B, H) from the static encoding (B, S)."""
        h0 = torch.tanh(self.init(static)).view(static.shape[0], self.layers, self.hidden)
        return h0.transpose(0, 1).contiguous()

    def forward(self, inputs: Tensor, static: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Hidden states (B, T, H) of a teacher-forced pass and the final state (to continue from)."""
        out, last = self.rnn(inputs, self.initial(static) if state is None else state)
        return out, last

    def start_state(self, static: Tensor) -> Tensor:
        """State before the first sampled step."""
        return self.initial(static)

    def step(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One sampling step: inputs (B, in) -> hidden (B, H) and the new state."""
        out, state = self.rnn(inputs.unsqueeze(1), state)
        return out[:, 0], state


class _CausalBlock(nn.Module):
    """A residual causal dilated convolution (kernel 3) with a gated activation."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.pad = 2 * dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size=3, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, C, T), each output seeing only the past."""
        filt, gate = self.conv(F.pad(x, (self.pad, 0))).chunk(2, dim=1)
        result: Tensor = x + self.out(torch.tanh(filt) * torch.sigmoid(gate))
        return result


class _TcnBackbone(nn.Module):
    """A stack of causal dilated convolutions (WaveNet-style); sampling re-runs the receptive field."""

    def __init__(self, in_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        dilations = [2**i for i in range(max(layers, 1))]
        self.blocks = nn.ModuleList(_CausalBlock(hidden, d) for d in dilations)
        self.receptive = 1 + 2 * sum(dilations)

    def forward(self, inputs: Tensor, static: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Hidden states (B, T, H) of a teacher-forced pass and the inputs of the receptive field (the state).

        ``static`` is already part of the inputs; ``state`` holds the inputs that came before.
        """
        steps = inputs.shape[1]
        window = inputs if state is None else torch.cat([state, inputs], dim=1)
        x = self.inp(window).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        hidden = torch.relu(x.transpose(1, 2))[:, -steps:]
        return hidden, window[:, -(self.receptive - 1) :]

    def start_state(self, static: Tensor) -> Tensor:
        """No inputs seen yet: an empty window (B, 0, in)."""
        return static.new_zeros((static.shape[0], 0, self.inp.in_features))

    def step(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One sampling step over the last ``receptive`` inputs."""
        window = torch.cat([state, inputs.unsqueeze(1)], dim=1)[:, -self.receptive :]
        hidden, _ = self.forward(window, inputs.new_zeros((inputs.shape[0], 0)))
        return hidden[:, -1], window


class _FieldHead(_Constants):
    """Per-field MLPs batched as masked linear layers (MADE over field blocks).

    Hidden group ``j`` sees the context and the encoded fields before ``j``; output block
    ``j`` sees hidden group ``j`` only.
    """

    x_mask: Tensor
    out_keep: Tensor

    def __init__(self, fields: list[FieldLayout], context_dim: int, units: int, components: int) -> None:
        super().__init__()
        self.fields = fields
        self.units = units
        self.components = components
        in_dims = [f.in_dim for f in fields]
        out_dims = [f.out_dim(components) for f in fields]
        self.in_start = [sum(in_dims[:j]) for j in range(len(fields))]
        self.out_start = [sum(out_dims[:j]) for j in range(len(fields))]
        self.in_dims, self.out_dims = in_dims, out_dims
        n_in, n_hidden = sum(in_dims), units * len(fields)
        self.context = nn.Linear(context_dim, n_hidden)
        self.x_weight = nn.Parameter(torch.empty(n_hidden, max(n_in, 1)))
        self.n_fields = len(fields)
        self.mid = nn.Parameter(torch.empty(len(fields), units, units))  # block-diagonal: one block per field
        self.mid_bias = nn.Parameter(torch.zeros(len(fields), units))
        widest = max(out_dims, default=1)
        self.out_weight = nn.Parameter(torch.empty(len(fields), widest, units))  # per field, padded
        self.out_bias = nn.Parameter(torch.zeros(len(fields), widest))
        x_mask = torch.zeros(n_hidden, max(n_in, 1))
        for j in range(len(fields)):
            x_mask[j * units : (j + 1) * units, : self.in_start[j]] = 1.0
        self._constant("x_mask", x_mask)
        # where each field's real outputs sit in the padded (field, widest) grid, flattened
        keep = [j * widest + k for j in range(len(fields)) for k in range(out_dims[j])]
        self._constant("out_keep", torch.tensor(keep, dtype=torch.long))
        bound = 1.0 / math.sqrt(max(n_in, 1))
        nn.init.uniform_(self.x_weight, -bound, bound)
        nn.init.uniform_(self.mid, -1.0 / math.sqrt(units), 1.0 / math.sqrt(units))
        nn.init.uniform_(self.out_weight, -1.0 / math.sqrt(units), 1.0 / math.sqrt(units))

    def forward(self, context: Tensor, x: Tensor) -> Tensor:
        """Output parameters (..., n_out) given the context and the (teacher-forced) event."""
        hidden = torch.relu(self.context(context) + F.linear(x, self.x_weight * self.x_mask))
        groups = hidden.reshape(*hidden.shape[:-1], self.n_fields, self.units)
        groups = torch.relu(torch.einsum("...fm,fnm->...fn", groups, self.mid) + self.mid_bias) + groups
        padded = torch.einsum("...fm,fkm->...fk", groups, self.out_weight) + self.out_bias
        out: Tensor = padded.flatten(-2)[..., self.out_keep]
        return out

    def field_output(self, j: int, context_part: Tensor, x: Tensor) -> Tensor:
        """Output block of field ``j`` only (sampling): ``context_part`` is ``self.context(context)``."""
        rows = slice(j * self.units, (j + 1) * self.units)
        cols = self.in_start[j]
        pre = context_part[:, rows]
        if cols:
            pre = pre + x[:, :cols] @ self.x_weight[rows, :cols].T
        hidden = torch.relu(pre)
        hidden = torch.relu(hidden @ self.mid[j].T + self.mid_bias[j]) + hidden
        width = self.out_dims[j]
        result: Tensor = hidden @ self.out_weight[j, :width].T + self.out_bias[j, :width]
        return result


class _Carry(_Constants):
    """Learned direct paths from the previous event to the current event's output parameters.

    Per numeric field a gain adds the previous normal score to every mixture mean (a smooth
    series like air pressure is then "previous value plus a small change"); per nullable
    field a weight adds the previous missing flag to the missing logit (sensor outages come
    in blocks); per categorical field a weight adds the previous one-hot to the logits
    (wind direction persists). Measured on Beijing air quality, these paths were what made
    step-to-step roughness and category persistence match the real series.
    """

    rows: Tensor
    cols: Tensor
    which: Tensor

    def __init__(self, fields: list[FieldLayout], in_start: list[int], out_start: list[int], components: int) -> None:
        super().__init__()
        rows: list[int] = []
        cols: list[int] = []
        which: list[int] = []
        init: list[float] = []
        n_params = 0
        for j, field in enumerate(fields):
            if field.kind == "numeric":
                offset = 1 if field.nullable else 0
                for k in range(components):
                    rows.append(in_start[j])
                    cols.append(out_start[j] + offset + components + k)
                    which.append(n_params)
                init.append(1.0)
                n_params += 1
                if field.nullable:
                    rows.append(in_start[j] + 1)
                    cols.append(out_start[j])
                    which.append(n_params)
                    init.append(0.0)
                    n_params += 1
            else:
                for c in range(field.n_categories):
                    rows.append(in_start[j] + c)
                    cols.append(out_start[j] + c)
                    which.append(n_params)
                init.append(0.0)
                n_params += 1
        self.weight = nn.Parameter(torch.tensor(init, dtype=torch.float32).reshape(-1))
        self._constant("rows", torch.tensor(rows, dtype=torch.long))
        self._constant("cols", torch.tensor(cols, dtype=torch.long))
        self._constant("which", torch.tensor(which, dtype=torch.long))
        self.x_dim = sum(f.in_dim for f in fields)
        self.out_dim = out_start[-1] + fields[-1].out_dim(components) if fields else 0

    def matrix(self) -> Tensor:
        """The (x_dim, out_dim) map from the previous event to output parameters."""
        dense = self.weight.new_zeros((max(self.x_dim, 1), max(self.out_dim, 1)))
        return dense.index_put((self.rows, self.cols), self.weight[self.which])

    def forward(self, x_prev: Tensor) -> Tensor:
        """Additive contribution (..., out_dim) of the previous event."""
        result: Tensor = x_prev @ self.matrix()[: self.x_dim, : self.out_dim]
        return result


class SequenceNet(_Constants):
    """Backbone + field-autoregressive head + delta head (see the module docstring)."""

    mix_index: Tensor
    miss_index: Tensor

    def __init__(
        self,
        fields: list[FieldLayout],
        static_dim: int,
        *,
        backbone: Backbone = "gru",
        hidden: int = 64,
        layers: int = 1,
        head_units: int = 32,
        components: int = 4,
        dp: bool = False,
    ) -> None:
        super().__init__()
        self.fields = fields
        self.static_dim = static_dim
        self.components = components
        self.x_dim = sum(f.in_dim for f in fields)
        in_dim = self.x_dim + 2 + TIME_FEATURES + static_dim  # prev event, start flag, delta, time, static
        self.backbone_kind = backbone
        self.backbone: _GruBackbone | _TcnBackbone
        if backbone == "gru":
            self.backbone = _GruBackbone(in_dim, static_dim, hidden, layers, dp=dp)
        else:
            self.backbone = _TcnBackbone(in_dim, hidden, layers)
        self.head = _FieldHead(fields, hidden + TIME_FEATURES, head_units, components)
        self.carry = _Carry(fields, self.head.in_start, self.head.out_start, components)
        self.delta_head = nn.Sequential(
            nn.Linear(hidden + self.x_dim, head_units), nn.ReLU(), nn.Linear(head_units, 3 * components)
        )
        numeric = [j for j, f in enumerate(fields) if f.kind == "numeric"]
        self.numeric_fields = numeric
        self.categorical_fields = [j for j, f in enumerate(fields) if f.kind == "categorical"]
        mix_index = []
        miss_index = []
        for j in numeric:
            start = self.head.out_start[j]
            offset = 1 if fields[j].nullable else 0
            mix_index.append(list(range(start + offset, start + offset + 3 * components)))
            miss_index.append(start if fields[j].nullable else -1)
        self._constant("mix_index", torch.tensor(mix_index, dtype=torch.long).reshape(len(numeric), -1))
        self._constant("miss_index", torch.tensor(miss_index, dtype=torch.long))

    def _static(self, static: Tensor) -> Tensor:
        return static if self.static_dim else static.new_zeros((static.shape[0], 1))

    def forward(
        self,
        x_prev: Tensor,
        start: Tensor,
        delta: Tensor,
        time: Tensor,
        static: Tensor,
        x_cur: Tensor,
        state: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced pass: field parameters (B, T, P), next-delta parameters (B, T, 3K), final state.

        ``state`` continues from a previous segment of the same sequences (truncated BPTT).
        """
        steps = x_prev.shape[1]
        expanded = static.unsqueeze(1).expand(-1, steps, -1)
        inputs = torch.cat([x_prev, start, delta, time, expanded], dim=-1)
        hidden, last = self.backbone(inputs, self._static(static), state)
        fields = self.head(torch.cat([hidden, time], dim=-1), x_cur) + self.carry(x_prev)
        deltas = self.delta_head(torch.cat([hidden, x_cur], dim=-1))
        return fields, deltas, last

    def loss(
        self,
        fields_out: Tensor,
        delta_out: Tensor,
        *,
        z_num: Tensor,
        miss: Tensor,
        cat_idx: Tensor,
        next_delta: Tensor,
        next_delta_mask: Tensor,
        valid: Tensor,
        per_sample_length: int | None = None,
    ) -> Tensor:
        """Negative log-likelihood (fields + next inter-arrival time).

        By default the mean per valid step of the batch. With ``per_sample_length`` each
        sequence's summed NLL is divided by that constant and the batch mean is returned, so
        each sample's gradient depends on its own data only (what DP-SGD clipping assumes).
        """
        total = fields_out.new_zeros(fields_out.shape[:2])
        if self.numeric_fields:
            mix = fields_out[..., self.mix_index]  # (B, T, Fn, 3K)
            value_nll = _mixture_nll(mix, z_num)
            total = total + torch.where(miss, torch.zeros_like(value_nll), value_nll).sum(-1)
            nullable: Tensor = self.miss_index >= 0
            if bool(nullable.any()):
                logits = fields_out[..., self.miss_index.clamp(min=0)]
                miss_nll = F.binary_cross_entropy_with_logits(logits, miss.to(logits.dtype), reduction="none")
                total = total + (miss_nll * nullable.to(logits.dtype)).sum(-1)
        for k, j in enumerate(self.categorical_fields):
            start = self.head.out_start[j]
            logits = fields_out[..., start : start + self.fields[j].n_categories]
            total = total + F.cross_entropy(logits.transpose(1, 2), cat_idx[..., k], reduction="none")
        delta_nll = _mixture_nll(delta_out, next_delta) * next_delta_mask.to(total.dtype)
        valid_f = valid.to(total.dtype)
        per_step = (total + delta_nll) * valid_f
        if per_sample_length is not None:
            return (per_step.sum(dim=1) / float(per_sample_length)).mean()
        return per_step.sum() / valid_f.sum().clamp(min=1.0)

    # -- sampling ------------------------------------------------------------------------------

    def start_state(self, static: Tensor) -> Tensor:
        """Backbone state before the first step of each entity."""
        return self.backbone.start_state(self._static(static))

    def step(
        self,
        state: Tensor,
        x_prev: Tensor,
        start: Tensor,
        delta: Tensor,
        time: Tensor,
        static: Tensor,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Sample one event per entity.

        Returns the new state, the encoded event (B, D), numeric normal scores (B, Fn),
        missing flags (B, Fn), category indices (B, Fc) and the next delta's normal score (B,).
        """
        inputs = torch.cat([x_prev, start, delta, time, static], dim=-1)
        hidden, state = self.backbone.step(inputs, state)
        context_part = self.head.context(torch.cat([hidden, time], dim=-1))
        carried = self.carry(x_prev)
        batch = x_prev.shape[0]
        x = x_prev.new_zeros((batch, self.x_dim))
        z_num = x_prev.new_zeros((batch, len(self.numeric_fields)))
        miss = torch.zeros((batch, len(self.numeric_fields)), dtype=torch.bool, device=x.device)
        cat_idx = torch.zeros((batch, len(self.categorical_fields)), dtype=torch.long, device=x.device)
        n_k = c_k = 0
        for j, field in enumerate(self.fields):
            first = self.head.out_start[j]
            out = self.head.field_output(j, context_part, x) + carried[:, first : first + self.head.out_dims[j]]
            col = self.head.in_start[j]
            if field.kind == "numeric":
                params = out
                if field.nullable:
                    p_miss = torch.sigmoid(out[:, 0])
                    is_missing = torch.rand(p_miss.shape, generator=generator, device=x.device) < p_miss
                    params = out[:, 1:]
                    miss[:, n_k] = is_missing
                    x[:, col + 1] = is_missing.to(x.dtype)
                else:
                    is_missing = torch.zeros(batch, dtype=torch.bool, device=x.device)
                z = _mixture_sample(params, generator).clamp(-6.0, 6.0)
                z = torch.where(is_missing, torch.zeros_like(z), z)
                z_num[:, n_k] = z
                x[:, col] = z
                n_k += 1
            else:
                probs = F.softmax(out, dim=-1)
                idx = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
                cat_idx[:, c_k] = idx
                x[:, col : col + field.n_categories] = F.one_hot(idx, field.n_categories).to(x.dtype)
                c_k += 1
        delta_params = self.delta_head(torch.cat([hidden, x], dim=-1))
        next_delta = _mixture_sample(delta_params, generator).clamp(-6.0, 6.0)
        return state, x, z_num, miss, cat_idx, next_delta
