"""One recurrent layer as a pair of functions: the cache and the forward/backward that rnn_forward, lstm_forward and gru_forward share.

The public functions (fastbp.rnn, fastbp.lstm, fastbp.gru) validate their
arguments, then call :func:`forward` and :func:`backward` here, which run one
direction of one layer on the engine (fastbp._recurrent.EngineCell) and keep
what the backward needs in a read-only :class:`LayerCache`.
"""
from types import MappingProxyType

from ._memory import pooled
from ._sequence import ReadOnly

__all__ = ["LayerCache", "forward", "backward"]


class LayerCache(ReadOnly):
    """What a layer's forward keeps for its backward (read-only: attributes
    cannot be assigned, and a backward leaves the cache unchanged unless it
    consumes it with ``overwrite_cache=True``).

    Attributes (computation dtype, caller's row order; do not modify them
    before the backward)
    ----------
    x : (T, B, I)           the inputs (the converted array, not a copy)
    weight_ih, weight_hh    the weights used
    lengths : (B,) int64 or None, as given
    y : (T, B, H)           every ``h_t`` (zero past each row's length)
    h0, h_n : (B, H)        the initial state used and each row's final state
    hs                      the engine's h buffer: ``(T+1, B, H)`` with
                            ``hs[0] = h0``, ``hs[t] = h_t`` without lengths;
                            with lengths, src_c/seq.h's slot layout
    """

    __slots__ = ("x", "weight_ih", "weight_hh", "layout", "cell", "_xs", "_weights", "_states",
                 "_gates", "_y")
    _viewed = ("x", "_xs", "weight_ih", "weight_hh")

    def __init__(self, x, xs, weights, run, layout, cell, y):
        self._set(x=x, _xs=xs,                  # _xs: x in the slot layout (x itself when plain)
                  weight_ih=weights["weight_ih"], weight_hh=weights["weight_hh"],
                  _weights=_frozen(weights), _states=tuple(run["states"]), _gates=run["gates"],
                  layout=layout, cell=cell, _y=y)

    @property
    def lengths(self):
        return self.layout.lengths

    @property
    def y(self):
        return self._y

    @property
    def H(self):
        return self.weight_hh.shape[1]

    @property
    def dtype(self):
        return self._states[0].dtype

    @property
    def consumed(self):
        """True once a backward with ``overwrite_cache=True`` reused the gates' buffer."""
        return self.cell.spec.info["saved"] > 0 and self._gates is None

    def _state_buffer(self, k):
        """State k's engine buffer: (T+1, B, H) without lengths, else the slot rows."""
        s = self._states[k]
        if self.layout.varlen:
            return s
        return s.reshape(self.layout.T + 1, self.layout.B, self.H)

    def _initial(self, k):
        return self.layout.to_caller(self._states[k][:self.layout.B])

    def _final(self, k):
        return self.layout.final(self._states[k])

    def _every(self, k):
        """State k at every step, (T, B, H), zero past each row's length."""
        return self.layout.outputs(self._states[k], self.H)

    def _saved_gates(self, width, name):
        """The gates buffer as (T, B, width) (caller order, zero past lengths)."""
        if self._gates is None:
            raise RuntimeError(f"cache.{name}: this cache was consumed by a backward pass "
                               "with overwrite_cache=True")
        g = self._gates
        if self.layout.varlen:
            return self.layout.unslot(g, g.shape[1])[..., :width]
        return g.reshape(self.layout.T, self.layout.B, g.shape[1])[..., :width]

    @property
    def hs(self):
        return self._state_buffer(0)

    @property
    def h0(self):
        return self._initial(0)

    @property
    def h_n(self):
        return self._final(0)

    def __repr__(self):
        T, B, I = self.x.shape
        return (f"{type(self).__name__}(T={T}, B={B}, I={I}, H={self.H}, dtype={self.dtype}, "
                f"lengths={self.lengths is not None}, resets={self.layout.sched.events})")


def _frozen(weights):
    """A read-only mapping of views: reshaping the caller's array in place does
    not reshape what the backward reads."""
    return MappingProxyType({k: None if v is None else v.view() for k, v in weights.items()})


@pooled
def forward(cell, cache_class, x, init, weights, layout, keep_cache=True, **extra):
    """Run one layer, one direction. x (T, B, I) validated (its dtype
    computes); init: one (B, H) array or None per state name; weights: the
    engine's dict of validated arrays. Returns (y, finals, cache), the cache
    None when not keep_cache (inference: nothing is kept for a backward)."""
    T, B, _ = x.shape
    H = weights["weight_hh"].shape[1]
    dt = x.dtype
    xs = layout.slots(x)
    pack = cell.pack_workspace(B, H, dt) if T else None
    scratch = cell.scratch(layout.sched, H, dt, False, pack)
    run, = cell.forward_layer(layout, [xs], [weights], [tuple(init)], H, scratch)
    y = layout.outputs(run["states"][0], H)
    finals = tuple(layout.final(s) for s in run["states"])
    if not keep_cache:
        return y, finals, None
    return y, finals, cache_class(x, xs, weights, run, layout, cell, y, **extra)


@pooled
def backward(cache, dy, dfinal, overwrite_cache=False, want_dx=True):
    """BPTT for :func:`forward`'s cache. dy (T, B, H) validated or None;
    dfinal: one (B, H) array or None per state. Returns a dict: "x" (T, B, I)
    (None unless want_dx), the initial states' gradients by state name + "0"
    ("h0", "c0"), and every parameter kind's gradient."""
    cell, layout = cache.cell, cache.layout
    spec = cell.spec
    T, B, I = cache.x.shape
    H, dt = cache.H, cache.dtype
    name = spec.name
    if overwrite_cache:     # the gate gradients overwrite the gates: the cache is consumed
        gates = cache._swap("_gates", None)
    else:
        gates = cache._gates
    if spec.info["saved"] and gates is None:    # consumed (perhaps by another thread)
        raise RuntimeError(f"cache: already consumed by {name}_backward(..., "
                           f"overwrite_cache=True); run {name}_forward again")
    run = {"x": cache._xs, "states": list(cache._states), "gates": gates}
    dys = [None if dy is None else layout.slots(dy)]
    pack = cell.pack_workspace(B, H, dt) if T else None
    scratch = cell.scratch(layout.sched, H, dt, True, pack)
    grads, dxs, dinit = cell.backward_layer(layout, [run], [dict(cache._weights)], dys,
                                            [tuple(dfinal)], want_dx, H, scratch, overwrite_cache)
    out = {"x": layout.unslot(dxs[0], I) if want_dx else None}
    out.update((state + "0", d) for state, d in zip(spec.state_names, dinit[0]))
    out.update(grads[0])
    return out
