"""The torch network behind :class:`~synthstream.models.sequence.SequenceGenerator`.

One step of an entity's sequence is modelled as

* a **backbone** (GRU, or a causal temporal convolution) reads, per step, the previous
  event's encoding, a start flag, the inter-arrival time that led to this step, the time
  features of this step (hour, weekday, season as sin/cos, and the absolute position of the
  step in the training data's span, so levels and trends tied to the date) and the entity's static
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
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 - the conventional torch alias

__all__ = ["TIME_FEATURES", "FieldLayout", "SequenceNet", "gru_state_names"]

TIME_FEATURES = 7  # sin/cos of hour-of-day, day-of-week and day-of-year; absolute position in the span
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


class _FieldHead(nn.Module):
    """One small MLP per field, each seeing the context and the encoded fields before it (MADE-style order).

    Built from plain linear layers only, so opacus computes per-sample gradients for DP-SGD
    with its native linear-layer rule.
    """

    out_keep: Tensor

    def __init__(self, fields: list[FieldLayout], context_dim: int, units: int, components: int) -> None:
        super().__init__()
        self.fields = fields
        self.units = units
        in_dims = [f.in_dim for f in fields]
        out_dims = [f.out_dim(components) for f in fields]
        self.in_start = [sum(in_dims[:j]) for j in range(len(fields))]
        self.out_start = [sum(out_dims[:j]) for j in range(len(fields))]
        self.in_dims, self.out_dims = in_dims, out_dims
        self.context = nn.Linear(context_dim, units * len(fields))
        # field 0 sees only the context; field j > 0 also sees fields 0..j-1 (self.inputs[j - 1])
        self.inputs = nn.ModuleList(nn.Linear(start, units, bias=False) for start in self.in_start[1:])
        self.mid = nn.ModuleList(nn.Linear(units, units) for _ in fields)
        self.out = nn.ModuleList(nn.Linear(units, width) for width in out_dims)
        self.widest = max(out_dims, default=1)
        keep = [j * self.widest + k for j in range(len(fields)) for k in range(out_dims[j])]
        self.register_buffer("out_keep", torch.tensor(keep, dtype=torch.long))
        #: Dense path (one batched matmul per layer) for plain training and sampling; DP-SGD
        #: calls each linear layer as a module so opacus sees its activations.
        self.dense = True

    def _field(self, j: int, context_part: Tensor, x: Tensor) -> Tensor:
        pre = context_part[..., j * self.units : (j + 1) * self.units]
        if j > 0:
            earlier: nn.Module = self.inputs[j - 1]
            pre = pre + earlier(x[..., : self.in_start[j]])
        mid: nn.Module = self.mid[j]
        out: nn.Module = self.out[j]
        hidden = torch.relu(pre)
        hidden = torch.relu(mid(hidden)) + hidden
        result: Tensor = out(hidden)
        return result

    def forward(self, context: Tensor, x: Tensor) -> Tensor:
        """Output parameters (..., n_out) given the context and the (teacher-forced) event."""
        if self.dense:
            return self._forward_dense(context, x)
        context_part = self.context(context)
        return torch.cat([self._field(j, context_part, x) for j in range(len(self.fields))], dim=-1)

    def _forward_dense(self, context: Tensor, x: Tensor) -> Tensor:
        """The same maths as the per-field loop, with the field weights stacked into a few batched ops."""
        n_fields, units, width = len(self.fields), self.units, x.shape[-1]
        blocks = [x.new_zeros((units, width))]
        blocks += [F.pad(layer.weight, (0, width - layer.weight.shape[1])) for layer in self._linears(self.inputs)]
        hidden = torch.relu(self.context(context) + x @ torch.cat(blocks, dim=0).T)
        groups = hidden.reshape(*hidden.shape[:-1], n_fields, units)
        mids = self._linears(self.mid)
        w_mid = torch.stack([layer.weight for layer in mids])
        b_mid = torch.stack([layer.bias for layer in mids])
        groups = torch.relu(torch.einsum("...fm,fnm->...fn", groups, w_mid) + b_mid) + groups
        outs = self._linears(self.out)
        pad = [self.widest - layer.weight.shape[0] for layer in outs]
        w_out = torch.stack([F.pad(layer.weight, (0, 0, 0, p)) for layer, p in zip(outs, pad, strict=True)])
        b_out = torch.stack([F.pad(layer.bias, (0, p)) for layer, p in zip(outs, pad, strict=True)])
        padded = torch.einsum("...fm,fkm->...fk", groups, w_out) + b_out
        out: Tensor = padded.flatten(-2)[..., self.out_keep]
        return out

    @staticmethod
    def _linears(layers: nn.ModuleList) -> list[nn.Linear]:
        return [layer for layer in layers if isinstance(layer, nn.Linear)]

    def field_output(self, j: int, context_part: Tensor, x: Tensor) -> Tensor:
        """Output block of field ``j`` only (sampling): ``context_part`` is ``self.context(context)``."""
        return self._field(j, context_part, x)


class _Carry(nn.Module):
    """Learned direct paths from the previous event to the current event's output parameters.

    Per field a linear map from its previous encoding to its output block, initialised so
    that each numeric field's mixture means start at the previous normal score (a smooth
    series like air pressure is then "previous value plus a small change"), while missing
    logits (sensor outages come in blocks) and category logits (wind direction persists,
    a learned transition matrix) start at zero. Measured on Beijing air quality, these
    paths were what made step-to-step roughness and category persistence match.
    """

    def __init__(self, fields: list[FieldLayout], components: int) -> None:
        super().__init__()
        self.in_dims = [f.in_dim for f in fields]
        maps = [nn.Linear(f.in_dim, f.out_dim(components), bias=False) for f in fields]
        with torch.no_grad():
            for field, linear in zip(fields, maps, strict=True):
                linear.weight.zero_()
                if field.kind == "numeric":
                    offset = 1 if field.nullable else 0
                    linear.weight[offset + components : offset + 2 * components, 0] = 1.0
        self.maps = nn.ModuleList(maps)

    def forward(self, x_prev: Tensor) -> Tensor:
        """Additive contribution (..., out_dim) of the previous event."""
        parts = []
        start = 0
        for width, linear in zip(self.in_dims, self.maps, strict=True):
            parts.append(linear(x_prev[..., start : start + width]))
            start += width
        return torch.cat(parts, dim=-1)


_GRU_PLAIN = re.compile(r"^(?P<base>.*rnn\.)(?P<kind>weight|bias)_(?P<gate>ih|hh)_(?P<layer>l\d+)$")
_GRU_DP = re.compile(r"^(?P<base>.*rnn\.)(?P<layer>l\d+)\.(?P<gate>ih|hh)\.(?P<kind>weight|bias)$")


def gru_state_names(state: dict[str, Tensor], *, to_dp: bool) -> dict[str, Tensor]:
    """Rename GRU weights between ``nn.GRU`` (``rnn.weight_ih_l0``) and opacus' DPGRU (``rnn.l0.ih.weight``).

    >>> sorted(gru_state_names({"b.rnn.weight_ih_l0": torch.zeros(1), "x": torch.zeros(1)}, to_dp=True))
    ['b.rnn.l0.ih.weight', 'x']
    >>> sorted(gru_state_names({"b.rnn.l1.hh.bias": torch.zeros(1)}, to_dp=False))
    ['b.rnn.bias_hh_l1']
    """
    pattern, template = (
        (_GRU_PLAIN, "{base}{layer}.{gate}.{kind}") if to_dp else (_GRU_DP, "{base}{kind}_{gate}_{layer}")
    )
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = pattern.match(key)
        out[template.format(**match.groupdict()) if match else key] = value
    return out


class SequenceNet(nn.Module):
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
        self.head.dense = not dp
        self.carry = _Carry(fields, components)
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
        self.register_buffer("mix_index", torch.tensor(mix_index, dtype=torch.long).reshape(len(numeric), -1))
        self.register_buffer("miss_index", torch.tensor(miss_index, dtype=torch.long))

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
