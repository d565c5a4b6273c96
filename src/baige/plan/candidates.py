"""Many strategies at once, one numpy column per knob, so the cost model runs vectorised.

The search scores tens of thousands of strategies; evaluating them one Python object at a
time would take seconds per thousand, while the same formulas over columns take
milliseconds. The cost and memory models are written once, over these columns, and a single
strategy is simply a batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from baige.plan.strategy import Recompute, Strategy

__all__ = ["BoolArray", "Candidates", "FloatArray", "IntArray"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Columns of strategies; row ``i`` is one strategy. ``last`` = layers on the last stage,
    ``first`` = layers on every other stage (equal to ``last`` for an even split); ``rl`` =
    layers per stage fully recomputed when ``rc`` is full (``first``: all of them)."""

    tp: IntArray
    pp: IntArray
    dp: IntArray
    cp: IntArray
    ep: IntArray
    mb: IntArray
    m: IntArray
    v: IntArray
    rc: IntArray
    dist_opt: IntArray
    first: IntArray
    last: IntArray
    rl: IntArray

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @staticmethod
    def build(**columns: npt.ArrayLike) -> Candidates:
        """Columns broadcast to one length (scalars allowed), as int64; ``rl`` defaults to
        ``first`` (full recomputation of every layer)."""
        columns.setdefault("rl", columns["first"])
        arrays = np.broadcast_arrays(*(np.asarray(columns[f.name]) for f in fields(Candidates)))
        return Candidates(*(np.array(a, dtype=np.int64).reshape(-1) for a in arrays))

    @staticmethod
    def of(strategy: Strategy, layers: int, global_batch: int) -> Candidates:
        """One strategy as a batch of one; an even split unless it names the last stage's."""
        s = strategy
        per_chunk = s.pp * s.interleave
        if s.last_stage_layers is None:
            if layers % per_chunk:
                raise ValueError(
                    f"{layers} layers do not split evenly into pp={s.pp}"
                    + (f" × interleave={s.interleave}" if s.interleave > 1 else "")
                    + "; give last_stage_layers (--last-stage-layers) for an uneven split"
                )
            first = last = layers // s.pp
        else:
            last = s.last_stage_layers
            rest = layers - last
            if s.pp == 1:
                if last != layers:
                    raise ValueError("with pp=1 the only stage holds every layer")
                first = last
            else:
                first = -(-rest // (s.pp - 1))
            if not 1 <= last <= layers or (s.pp > 1 and rest < s.pp - 1):
                raise ValueError(f"last_stage_layers={last} leaves a stage empty")
            if first % s.interleave:
                raise ValueError(
                    f"{first} layers per stage do not split into interleave={s.interleave} "
                    "chunks of whole layers"
                )
        return Candidates.build(
            tp=s.tp, pp=s.pp, dp=s.dp, cp=s.cp, ep=s.ep, mb=s.micro_batch,
            m=s.micro_batches(global_batch), v=s.interleave, rc=int(s.recompute),
            dist_opt=int(s.distributed_optimizer), first=first, last=last,
            rl=first if s.recompute_layers is None else min(s.recompute_layers, first),
        )  # fmt: skip

    @property
    def recompute_fraction(self) -> FloatArray:
        """Share of the layers fully recomputed: 1 for full recomputation of every layer, 0
        when nothing is recomputed in full."""
        full = self.rc == int(Recompute.FULL)
        share = np.clip(self.rl / np.maximum(self.first, 1), 0.0, 1.0)
        return np.where(full, share, 0.0)

    def select(self, index: npt.ArrayLike) -> Candidates:
        """The rows picked by a boolean mask or an index array."""
        idx = np.asarray(index)
        return Candidates(*(getattr(self, f.name)[idx] for f in fields(Candidates)))

    def strategy(self, i: int, layers: int) -> Strategy:
        """Row ``i`` as a :class:`Strategy` for a model of ``layers`` layers."""
        uneven = int(self.last[i]) * int(self.pp[i]) != layers
        partial = self.rc[i] == int(Recompute.FULL) and self.rl[i] < self.first[i]
        return Strategy(
            tp=int(self.tp[i]),
            pp=int(self.pp[i]),
            dp=int(self.dp[i]),
            cp=int(self.cp[i]),
            ep=int(self.ep[i]),
            micro_batch=int(self.mb[i]),
            recompute=Recompute(int(self.rc[i])),
            interleave=int(self.v[i]),
            distributed_optimizer=bool(self.dist_opt[i]),
            last_stage_layers=int(self.last[i]) if uneven else None,
            recompute_layers=int(self.rl[i]) if partial else None,
        )

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        names = [f.name for f in fields(Candidates)]
        if not parts:
            return Candidates(*(np.zeros(0, dtype=np.int64) for _ in names))
        return Candidates(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))
