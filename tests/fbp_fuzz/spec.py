"""The harness: argument specs, generated examples, layouts, corruptions, the check.

An ``Entry`` describes one public function or method: its array arguments
(``Arg``), the sizes they share (``dims``), its other arguments (``options``)
and two callables, ``call(ex)`` on the compiled path and ``reference(ex)``
with fastbp.reference, each returning a dict of results. ``check(entry,
data)`` draws one example with hypothesis and asserts the property of the
package docstring.
"""
import copy
import warnings

import numpy as np
from hypothesis import strategies as st

# ---- dtypes -------------------------------------------------------------------------------
# Accepted and converted (any real dtype; byte order irrelevant).
REAL_SOURCES = ("float64", "float32", "float16", ">f8", ">f4", "int8", "int64", "uint8",
                "uint64", "bool")
LABEL_SOURCES = ("int64", "int32", "int8", "uint8", "uint16", ">i8")
# Refused with a TypeError naming the argument.
REFUSED_FLOAT = ("complex128", "complex64", "object", "<U3", "datetime64[s]", "longdouble")
REFUSED_LABELS = ("float64", "complex128", "object", "<U3")
REFUSED_MASK = ("float64", "complex128", "object", "<U3")

INPUT_LAYOUTS = ("C", "C", "F", "strided", "reversed", "readonly", "misaligned", "broadcast", "list")
INPLACE_LAYOUTS = ("C", "C", "F", "strided", "reversed", "misaligned")

# Value regimes: scale of standard-normal values, or special mixes.
REGIMES = ("normal", "normal", "small", "large", "huge")
EXTREME_REGIMES = ("limits", "special")     # near the dtype's limits; NaN and ±inf


def computation_dtype(dtype):
    """The package's rule: float32/float64 (either byte order) stay, all else is float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return np.dtype(np.float32 if dtype.itemsize == 4 else np.float64)
    return np.dtype(np.float64)


class Arg:
    """One array argument.

    name:     as in the signature; the error messages must contain it.
    shape:    a tuple of dimension symbols (keys of Entry.dims or Entry.derived)
              or ints; "*" stands for 0 to 3 leading dimensions (the same for
              every argument of the example).
    kind:     "float" (any real dtype, converted), "labels" (integer class labels
              in [0, dims[classes]), "mask" (booleans), "lengths" (ints in
              [0, dims["T"]]), "inplace" (float32/float64 arrays the function
              writes by design, e.g. an optimizer's parameters).
    optional: None is accepted (it means zeros).
    finite:   NaN and ±inf are refused (True) or computed like the reference (False).
    classes:  for labels, the dimension symbol of the number of classes.
    dtype:    "entry" (converted to the entry's computation dtype), "own" (keeps
              its own float dtype), or the name of another Arg whose dtype it takes.
    sources:  the valid dtypes to draw from, instead of the kind's default.
    refused:  the dtypes that must be refused, instead of the kind's default.
    limits:   False keeps values near the float limits out of this argument
              (e.g. probabilities, where 1e307 has no meaning).
    pending:  corruptions not generated for this argument because fastbp mishandles
              them (none today: the finds so far are fixed, tests/robustness/test_sequence_validation.py).
              Empty this when that test passes.
    """

    def __init__(self, name, shape, kind="float", optional=False, finite=True, classes=None,
                 dtype="entry", sources=None, refused=None, limits=True, pending=()):
        self.name, self.shape, self.kind = name, tuple(shape), kind
        self.optional, self.finite, self.classes, self.dtype = optional, finite, classes, dtype
        self.sources, self.refused, self.limits, self.pending = sources, refused, limits, set(pending)

    def __repr__(self):
        return f"Arg({self.name!r}, {self.shape})"


class Entry:
    """One public function or method.

    id:          test id.
    args:        list of Arg, or a function options -> list of Arg.
    call:        ex -> dict of results, calling fastbp with ex.a (the arrays as
                 passed, None where None is passed) and ex.o (options).
    reference:   ex -> dict of expected results from fastbp.reference, with ex.c
                 (the converted values: computation dtype, int64 labels, C order).
    dims:        {symbol: (low, high)} sizes drawn per example; "*" for leading dims.
    derived:     {symbol: function(dims) -> size}, e.g. {"G": lambda d: 4 * d["H"]}.
    options:     {name: list of valid values} for the other arguments.
    bad_options: {name: list of values that must be refused naming `name`}.
    dtype_from:  the Arg whose dtype is the computation dtype, or a function ex -> dtype.
    setup:       ex -> None, run after the arrays are made (build a model, a cache).
    regimes:     value regimes allowed (REGIMES by default; add EXTREME_REGIMES where
                 the function is elementwise or a loss, so results stay comparable).
    mutates:     names of Args the function writes by design (compared to the
                 reference instead of to their old bytes).
    model_mutates: the method updates the model (fit, params setter).
    exact_keys:  results compared exactly (integer labels, counts).
    sources:     {kind: dtypes} replacing the default valid dtypes of a kind.
    tol:         {"float64": (rtol, atol), "float32": (rtol, atol)} instead of the defaults.
    reference_in_float64: give the reference float64 copies and round its arrays to the
                 computation dtype: for losses, which fastbp accumulates in float64
                 whatever the dtype (a float32 reference would overflow first).
    """

    def __init__(self, id, args, call, reference, dims, derived=None, options=None,
                 bad_options=None, dtype_from=None, setup=None, regimes=REGIMES, mutates=(),
                 model_mutates=False, exact_keys=(), tol=None, sources=None,
                 reference_in_float64=False):
        self.id, self._args, self.call, self.reference = id, args, call, reference
        self.dims, self.derived = dims, derived or {}
        self.options, self.bad_options = options or {}, bad_options or {}
        self.dtype_from, self.setup, self.regimes = dtype_from, setup, regimes
        self.mutates, self.model_mutates, self.exact_keys = set(mutates), model_mutates, set(exact_keys)
        self.tol, self.sources = tol, sources or {}
        self.reference_in_float64 = reference_in_float64

    def args(self, options):
        return self._args(options) if callable(self._args) else self._args

    def __repr__(self):
        return self.id


class Example:
    """One generated call: options o, sizes d, arrays as passed a, converted values c."""

    def __init__(self):
        self.o, self.d, self.a, self.c = {}, {}, {}, {}
        self.holders, self.views, self.layouts, self.sources = {}, {}, {}, {}
        self.model = None
        self.blame = set()          # names an error message may name; empty: a valid call
        self.must_refuse = False    # the call must raise
        self.corruption = None
        self.regime = None

    def describe(self):
        parts = [f"options={self.o}", f"dims={self.d}", f"regime={self.regime}",
                 f"corruption={self.corruption}"]
        for name, a in self.a.items():
            shape = getattr(a, "shape", type(a).__name__)
            parts.append(f"{name}: {self.sources.get(name)} {self.layouts.get(name)} {shape}")
        return "\n  ".join(parts)


# ---- values and layouts ----------------------------------------------------------------------
def _values(rng, shape, arg, source, comp, regime, d):
    """Logical values of `source` dtype for `arg` (before any layout)."""
    src = np.dtype(source)
    if arg.kind == "labels":
        return rng.integers(0, d[arg.classes], size=shape).astype(src)
    if arg.kind == "mask":
        return (rng.random(shape) < 0.3).astype(src)
    if arg.kind == "lengths":
        v = rng.integers(0, d["T"] + 1, size=shape)
        if v.size and d["T"] and not v.any():
            v[rng.integers(0, v.size)] = rng.integers(1, d["T"] + 1)   # some step to score
        return v.astype(src)
    if src.kind == "b":
        return rng.random(shape) < 0.5
    if src.kind in "iu":
        low = 0 if src.kind == "u" else -3
        return rng.integers(low, 4, size=shape).astype(src)
    v = rng.standard_normal(shape)
    if regime == "small":
        v *= 1e-3
    elif regime == "large":
        v *= 30.0
    elif regime == "huge":
        v *= 1e4
    elif regime == "limits" and src.itemsize >= 4 and arg.limits:
        # near the largest and smallest magnitudes of the narrower of source and computation
        fi = np.finfo(np.float32 if min(src.itemsize, comp.itemsize) == 4 else np.float64)
        pick = rng.integers(0, 4, size=shape)
        v = np.where(pick == 0, np.sign(v) * float(fi.max) / 8,
                     np.where(pick == 1, np.sign(v) * float(fi.tiny) * 4, v))
    elif regime == "special" and not arg.finite:
        pick = rng.integers(0, 6, size=shape)
        v = np.where(pick == 0, np.nan, np.where(pick == 1, np.inf, np.where(pick == 2, -np.inf, v)))
    with np.errstate(over="ignore"):
        return v.astype(src)


def _lay_out(v, layout):
    """(passed object, holder array whose bytes back it or None, view_of(holder))."""
    if layout == "list" and v.size and v.dtype.kind != "V":
        return v.tolist(), None, None
    if layout == "F" and v.ndim >= 2:
        h = np.asfortranarray(v)
        return h, h, lambda h: h
    if layout == "strided" and v.ndim >= 1:
        big = np.empty(tuple(2 * s + 1 for s in v.shape), v.dtype)
        big[...] = np.nan if v.dtype.kind == "f" else 7    # garbage between the elements
        sl = tuple(slice(1, None, 2) for _ in v.shape)
        big[sl] = v
        return big[sl], big, lambda h: h[sl]
    if layout == "reversed" and v.ndim >= 1:
        h = np.array(np.flip(v))
        return np.flip(h), h, lambda h: np.flip(h)
    if layout == "readonly":
        h = np.array(v)
        h.flags.writeable = False
        return h, h, lambda h: h
    if layout == "misaligned" and v.dtype.itemsize > 1:
        buf = np.zeros(v.nbytes + 1, np.uint8)
        shape, dtype = v.shape, v.dtype
        view = buf[1:].view(dtype).reshape(shape)
        view[...] = v
        return view, buf, lambda h: h[1:].view(dtype).reshape(shape)
    if layout == "broadcast" and v.ndim >= 1 and v.shape[0] >= 1:
        h = np.array(v[:1])
        shape = v.shape
        return np.broadcast_to(h, shape), h, lambda h: np.broadcast_to(h, shape)
    h = np.array(v, order="C")
    return h, h, lambda h: h


# ---- corruptions ---------------------------------------------------------------------------
# (name, must_refuse): applied to one argument (or option) of a valid example.
ARG_CORRUPTIONS = ("none", "dtype", "ragged", "nonfinite", "label_range", "dim", "ndim",
                   "scalar", "object")


def _shape_symbols(arg):
    return [s for s in arg.shape if isinstance(s, str) and s != "*"]


def draw_example(entry, data):
    """Draw options, sizes, dtypes, layouts, values and at most one corruption."""
    ex = Example()
    for name, values in entry.options.items():
        ex.o[name] = data.draw(st.sampled_from(values), label=name)
    args = entry.args(ex.o)
    ex.args = args
    for sym, (lo, hi) in entry.dims.items():
        if sym == "*":
            n = data.draw(st.integers(0, 3), label="n_lead")
            ex.d["*"] = tuple(data.draw(st.integers(lo, hi), label="lead") for _ in range(n))
        else:
            ex.d[sym] = data.draw(st.integers(lo, hi), label=sym)
    for sym, fn in entry.derived.items():
        ex.d[sym] = fn(ex.d)
    ex.regime = data.draw(st.sampled_from(tuple(entry.regimes)), label="regime")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)

    # which argument to corrupt, and how (about half of the examples)
    corrupt = data.draw(st.booleans(), label="corrupt")
    target, how = None, None
    if corrupt:
        choices = [(a.name, c) for a in args for c in _applicable(a, entry)]
        choices += [(name, "option") for name in entry.bad_options]
        if choices:
            target, how = data.draw(st.sampled_from(choices), label="corruption")
            ex.corruption = (target, how)

    # sources, layouts
    for arg in args:
        if arg.sources:
            ex.sources[arg.name] = data.draw(st.sampled_from(arg.sources), label="src")
        elif arg.kind == "labels":
            ex.sources[arg.name] = data.draw(st.sampled_from(LABEL_SOURCES), label="src")
        elif arg.kind == "mask":
            ex.sources[arg.name] = "bool"
        elif arg.kind == "lengths":
            ex.sources[arg.name] = data.draw(st.sampled_from(LABEL_SOURCES), label="src")
        elif arg.kind == "inplace":
            ex.sources[arg.name] = data.draw(
                st.sampled_from(entry.sources.get("inplace", ("float64", "float32"))), label="src")
        else:
            ex.sources[arg.name] = data.draw(st.sampled_from(REAL_SOURCES), label="src")
        layouts = INPLACE_LAYOUTS if arg.kind == "inplace" or arg.name in entry.mutates else INPUT_LAYOUTS
        layout = data.draw(st.sampled_from(layouts), label="layout")
        if layout == "list" and (arg.kind != "float" or np.dtype(ex.sources[arg.name]).byteorder == ">"
                                 or 0 in _shape_of(arg, ex.d)):
            layout = "C"      # non-empty lists of floats only (an empty list has lost its shape)
        if arg.optional and data.draw(st.integers(0, 3), label="none?") == 0:
            layout = "None"
        ex.layouts[arg.name] = layout

    # the computation dtype
    if callable(entry.dtype_from):
        ex.comp = np.dtype(entry.dtype_from(ex))
    elif entry.dtype_from is not None:
        src = ex.sources[entry.dtype_from]
        ex.comp = np.dtype(np.float64) if ex.layouts[entry.dtype_from] == "list" else computation_dtype(src)
    else:
        ex.comp = np.dtype(np.float64)

    # arrays
    for arg in args:
        shape = _shape_of(arg, ex.d)
        if ex.layouts[arg.name] == "None":
            ex.a[arg.name] = ex.c[arg.name] = None
            continue
        comp = _comp_of(arg, ex)
        v = _values(rng, shape, arg, ex.sources[arg.name], comp, ex.regime, ex.d)
        layout = ex.layouts[arg.name]
        if layout == "broadcast" and v.ndim and v.shape[0]:
            v = np.broadcast_to(v[:1], v.shape).copy()
            if arg.kind == "lengths" and ex.d["T"] and not v.any():
                v[...] = ex.d["T"]                   # keep a step to score
        passed, holder, view_of = _lay_out(v, layout)
        ex.a[arg.name], ex.holders[arg.name], ex.views[arg.name] = passed, holder, view_of
        ex.c[arg.name] = _converted(arg, passed, comp)

    if how is not None:
        _corrupt(ex, entry, target, how, rng, data)
    return ex


def _applicable(arg, entry):
    out = ["dim"] if _shape_symbols(arg) else []
    if not arg.optional:
        out.append("none")
    if arg.kind in ("float", "inplace"):
        out += ["dtype", "object"]
        if arg.finite:
            out.append("nonfinite")
    if arg.kind == "labels":
        out += ["dtype", "label_range"]
    if arg.kind == "lengths":
        out += ["dtype", "label_range"]     # a length outside [0, T]
    if arg.kind == "mask":
        out += ["dtype", "mask_value"]      # an integer other than 0 and 1
    if len(arg.shape) >= 2 and "*" not in arg.shape:
        out.append("ragged")
    if "*" not in arg.shape and arg.shape:
        out += ["ndim", "scalar"]
    return [c for c in out if c not in arg.pending]


def _shape_of(arg, d):
    shape = []
    for s in arg.shape:
        if s == "*":
            shape.extend(d["*"])
        else:
            shape.append(d[s] if isinstance(s, str) else s)
    return tuple(shape)


def _comp_of(arg, ex):
    if arg.kind in ("labels", "lengths"):
        return np.dtype(np.int64)
    if arg.kind == "mask":
        return np.dtype(bool)
    if arg.dtype == "own" or arg.kind == "inplace":
        return computation_dtype(ex.sources[arg.name])
    if arg.dtype != "entry":
        return _comp_of(next(a for a in ex.args if a.name == arg.dtype), ex)
    return ex.comp


def _converted(arg, passed, comp):
    if passed is None:
        return None
    arr = np.asarray(passed)
    with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # complex -> real of refused inputs
        return np.array(arr, dtype=comp, order="C")


def _corrupt(ex, entry, target, how, rng, data):
    """Apply one corruption; set ex.blame (names the message may carry) and must_refuse."""
    ex.blame = {target}
    ex.must_refuse = True
    if how == "option":
        ex.o[target] = data.draw(st.sampled_from(entry.bad_options[target]), label="bad option")
        return
    arg = next(a for a in ex.args if a.name == target)
    old = ex.a[target]
    arr = None if old is None else np.asarray(old)
    shape = _shape_of(arg, ex.d)
    if how == "none":
        new = None
    elif how == "dtype":
        refused = arg.refused or (REFUSED_LABELS if arg.kind in ("labels", "lengths") else
                                  REFUSED_MASK if arg.kind == "mask" else REFUSED_FLOAT)
        dt = data.draw(st.sampled_from(refused), label="bad dtype")
        new = np.zeros(shape, dtype=dt)
    elif how == "object":                   # an object that is not an array at all
        new = {"not": "an array"}
    elif how == "ragged":
        rows = np.zeros(shape).tolist() if shape[0] >= 2 else [[0.0], [0.0, 0.0]]
        if shape[0] >= 2:
            rows[0] = 0.0 if not isinstance(rows[0], list) else rows[0] + [0.0]
        new = rows
    elif how in ("nonfinite", "label_range"):
        integer = how == "label_range"
        v = np.array(np.zeros(shape) if arr is None else arr, dtype=np.int64 if integer else np.float64)
        if v.size == 0:
            v = np.zeros(tuple(max(s, 1) for s in shape), v.dtype)
            ex.blame = _blame_all(ex, arg)     # resized as well
        bad = (rng.choice([-1, ex.d[arg.classes] if arg.kind == "labels" else ex.d["T"] + 1, 2**40])
               if integer else rng.choice([np.nan, np.inf, -np.inf]))
        index = _read_position(ex, arg, v.shape, rng)
        if index is None:          # every step is past its row's length: nothing is read
            ex.must_refuse = False
            index = (0,) * v.ndim
        v[index] = bad
        new = v
    elif how == "mask_value":
        v = np.array(np.zeros(shape, np.int64) if arr is None else arr, dtype=np.int64)
        if v.size == 0:
            v = np.zeros(tuple(max(s, 1) for s in shape), np.int64)
            ex.blame = _blame_all(ex, arg)
        v[tuple(int(rng.integers(0, s)) for s in v.shape)] = 2
        new = v
    elif how == "scalar":
        new = 0.5
    elif how == "ndim":
        # one axis more or one less: refused, or (e.g. labels (B,) -> one-hot (B, 1)) valid
        base = np.zeros(shape) if arr is None else np.array(arr)
        if base.ndim >= 1 and rng.random() < 0.5:
            new = base[..., 0] if base.shape[-1] else np.zeros(base.shape[:-1], base.dtype)
        else:
            new = base[..., None]
        ex.must_refuse = False
    elif how == "dim":
        axes = []                               # the symbol of every axis, None for "*" axes
        for s in arg.shape:
            axes.extend([None] * len(ex.d["*"]) if s == "*" else [s])
        sym = _shape_symbols(arg)[int(rng.integers(0, len(_shape_symbols(arg))))]
        axis = axes.index(sym)
        new_shape = list(shape)
        new_shape[axis] += 1 if new_shape[axis] < 3 or rng.random() < 0.5 else -1
        new = _values(rng, tuple(new_shape), arg, ex.sources[target], _comp_of(arg, ex), "normal", ex.d)
        if ex.layouts[target] == "list" and new.size:
            new = new.tolist()
        # a size change may be valid (the reference must agree) or name any argument sharing it
        ex.blame = _blame_all(ex, arg, sym)
        ex.must_refuse = False
    else:
        raise AssertionError(how)
    ex.a[target] = new
    ex.layouts[target] = f"corrupt:{how}"
    ex.holders[target] = None
    ex.views[target] = None
    try:
        if how == "ndim" and np.asarray(new).dtype.kind in "iu":
            ex.c[target] = np.array(new)        # e.g. one-hot rows made labels: keep them integers
        else:
            ex.c[target] = None if new is None else _converted(arg, new, _comp_of(arg, ex))
    except (TypeError, ValueError):
        ex.c[target] = None


def _read_position(ex, arg, shape, rng):
    """A random index of an array of `shape` that the call reads: with lengths=,
    targets past a row's length are padding, never read; None if there is none."""
    lengths = ex.c.get("lengths")
    if (lengths is None or arg.shape[:2] != ("T", "B") or arg.kind == "mask"
            or lengths.shape != (shape[1],)):
        return tuple(int(rng.integers(0, s)) for s in shape)
    valid = [(t, b) for b in range(shape[1]) for t in range(min(int(lengths[b]), shape[0]))]
    if not valid:
        return None
    t, b = valid[int(rng.integers(0, len(valid)))]
    return (t, b) + tuple(int(rng.integers(0, s)) for s in shape[2:])


def _blame_all(ex, arg, sym=None):
    """Every argument sharing a size with `arg` (a mismatch may be reported by any)."""
    syms = {sym} if sym else set(_shape_symbols(arg))
    # sizes an argument depends on: its shape's, its classes' (labels), T (lengths' values)
    names = {a.name for a in ex.args
             if syms & (set(_shape_symbols(a)) | {a.classes} | ({"T"} if a.kind == "lengths" else set()))}
    return names | {arg.name}


# ---- comparison ------------------------------------------------------------------------------
def tolerances(dtype, entry=None):
    if entry is not None and entry.tol is not None:
        return entry.tol[np.dtype(dtype).name]
    return (1e-9, 1e-10) if np.dtype(dtype) == np.float64 else (2e-3, 5e-4)


def assert_close(name, got, want, dtype, entry, exact=False):
    """got == want: equal non-finite positions; finite entries within rtol·|want|
    + atol·max|want| (a norm-wise bound, so that float32 entries that cancel to
    near zero are judged against the array's scale)."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{name}: expected an ndarray, got {type(got).__name__}"
        assert got.shape == want.shape, f"{name}: shape {got.shape}, reference {want.shape}"
        if not exact:
            assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {dtype}"
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=name)
        return
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(w)), f"{name}: NaN where the reference has none (or the reverse)\n{g}\n{w}"
    assert np.array_equal(np.isposinf(g), np.isposinf(w)) and np.array_equal(np.isneginf(g), np.isneginf(w)), \
        f"{name}: ±inf differ from the reference\n{g}\n{w}"
    fin = np.isfinite(w)
    if not fin.any():
        return
    rtol, atol = tolerances(dtype, entry)
    scale = max(1.0, float(np.max(np.abs(w[fin]))))
    err = np.abs(g[fin] - w[fin])
    bound = rtol * np.abs(w[fin]) + atol * scale
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (f"{name}: differs from the reference by {err[worst]:.3g} "
                                  f"(allowed {bound[worst]:.3g}, rtol {rtol}, atol {atol}·{scale:.3g})")


def _snapshot(ex):
    snap = {}
    for name, holder in ex.holders.items():
        if holder is not None:
            snap[name] = (holder.copy(), holder.tobytes())
        elif isinstance(ex.a.get(name), (list, dict)):
            snap[name] = copy.deepcopy(ex.a[name])
    if ex.model is not None:
        snap["<model>"] = [p.copy() for _, p in ex.model.named_parameters()]
    return snap


def _assert_unmodified(ex, entry, snap, skip=()):
    for name, saved in snap.items():
        if name == "<model>" or name in skip:
            continue
        if isinstance(saved, tuple):
            assert ex.holders[name].tobytes() == saved[1], f"{name}: the input was modified"
        else:
            assert ex.a[name] == saved, f"{name}: the input list was modified"
    if "<model>" in snap and "<model>" not in skip:
        for (pname, p), old in zip(ex.model.named_parameters(), snap["<model>"]):
            assert p.tobytes() == old.tobytes(), f"model parameter {pname} changed"


def _assert_written_in_place(ex, name, snap, want, entry):
    """A by-design output argument: its view holds `want`, bytes outside the view kept."""
    holder, view_of = ex.holders[name], ex.views[name]
    if holder is None:
        return
    assert_close(name + " (in place)", np.array(view_of(holder)), want, want.dtype, entry)
    after = holder.copy()
    view_of(after)[...] = view_of(snap[name][0])
    assert after.tobytes() == snap[name][1], f"{name}: bytes outside the array were written"


# ---- the check -------------------------------------------------------------------------------
def check(entry, data):
    ex = draw_example(entry, data)
    info = ex.describe()
    if entry.setup is not None:
        entry.setup(ex)
    snap = _snapshot(ex)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = entry.call(ex)
        except (ValueError, TypeError) as e:
            msg = str(e)
            assert ex.blame, f"a valid call raised {type(e).__name__}: {msg}\n  {info}"
            assert any(name in msg for name in ex.blame), (
                f"{type(e).__name__} does not name {sorted(ex.blame)}: {msg!r}\n  {info}")
            _assert_unmodified(ex, entry, snap)     # a refused call changes nothing at all
            return "refused"
    if ex.regime not in EXTREME_REGIMES:
        runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert not runtime, f"RuntimeWarning from the call: {runtime[0].message}\n  {info}"
    assert not ex.must_refuse, f"accepted an argument it must refuse\n  {info}"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if entry.reference_in_float64:
                comp_values = ex.c
                ex.c = {k: v.astype(np.float64) if v is not None and v.dtype.kind == "f" else v
                        for k, v in ex.c.items()}
                want = {k: v.astype(ex.comp) if isinstance(v, np.ndarray) else v
                        for k, v in entry.reference(ex).items()}
                ex.c = comp_values
            else:
                want = entry.reference(ex)
        except (ValueError, TypeError) as e:
            raise AssertionError(f"fastbp accepted a call the reference refuses ({e})\n  {info}")
    assert set(got) == {k for k in want if not k.startswith("inplace:")}, (sorted(got), sorted(want))
    for key in want:
        if key.startswith("inplace:"):
            _assert_written_in_place(ex, key[len("inplace:"):], snap, want[key], entry)
        else:
            try:
                assert_close(key, got[key], want[key], ex.comp, entry, exact=key in entry.exact_keys)
            except AssertionError as e:
                raise AssertionError(f"{e}\n  {info}") from None
    skip = set(entry.mutates) | ({"<model>"} if entry.model_mutates else set())
    _assert_unmodified(ex, entry, snap, skip=skip)
    return "computed"


def plain_example(entry, **options):
    """A valid example without hypothesis: the first value of every option (or
    the ones given), sizes of 2 (1 where only 1 is allowed), C-contiguous
    float64 / int64 arrays."""
    ex = Example()
    ex.o = {name: values[0] for name, values in entry.options.items()}
    ex.o.update(options)
    ex.args = entry.args(ex.o)
    for sym, (lo, hi) in entry.dims.items():
        ex.d[sym] = (2,) if sym == "*" else max(lo, min(hi, 2), 1)
    for sym, fn in entry.derived.items():
        ex.d[sym] = fn(ex.d)
    ex.regime = "normal"
    ex.comp = np.dtype(entry.dtype_from(ex)) if callable(entry.dtype_from) else np.dtype(np.float64)
    rng = np.random.default_rng(0)
    for arg in ex.args:
        src = (arg.sources or (("int64",) if arg.kind in ("labels", "lengths") else
                               ("bool",) if arg.kind == "mask" else ("float64",)))[0]
        ex.sources[arg.name], ex.layouts[arg.name] = src, "C"
        comp = _comp_of(arg, ex)
        v = _values(rng, _shape_of(arg, ex.d), arg, src, comp, "normal", ex.d)
        ex.a[arg.name], ex.holders[arg.name], ex.views[arg.name] = _lay_out(v, "C")
        ex.c[arg.name] = _converted(arg, ex.a[arg.name], comp)
    return ex


def blame_all(ex, arg):
    """The arguments an error about `arg`'s size may name (it, or any sharing a size)."""
    return _blame_all(ex, arg)


def shape_of(arg, ex):
    return _shape_of(arg, ex.d)
