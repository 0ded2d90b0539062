"""Boundary fuzzing of every public function and model method.

The promise: nothing a caller passes crashes the interpreter, corrupts
memory, modifies an input, or silently gives a wrong answer. For every
generated call, exactly one of these holds:

- it raises ValueError or TypeError whose message names the argument at
  fault (one of the arguments involved when the fault is a mismatch), or
- it returns what ``fastbp.reference`` (the NumPy oracle) computes from the
  same values converted by the documented dtype rule (float64 tight, float32
  loose), every returned array in the computation dtype, and no input (nor a
  model's parameters, unless the method updates them by design) changed by a
  single byte.

Calls that must be refused (None for a required array, complex / object /
string dtypes, ragged lists, NaN or inf where refused, class labels out of
range, bad option values) must raise; calls that may be valid (one axis of one
argument resized) must either raise naming an argument involved or equal the
reference. ``tests/fuzz/test_fuzz.py`` runs this per entry of ``table.ENTRIES``;
``tests/robustness/`` has the targeted tests (sizes past 32-bit indices,
leaks, threads, numerics, state).

Inputs are varied over: every real dtype NumPy has (bool, int8..uint64,
float16/32/64, big-endian) and the refused ones (complex, object, str,
datetime, longdouble); 0 to 3 leading dimensions where the API allows any;
empty axes; Python lists; C and Fortran order; strided, negative-stride,
read-only, misaligned (byte offset 1) and zero-stride (broadcast) views;
NaN, ±inf, values near the dtype's limits and tiny ones.

How many examples: ``FASTBP_FUZZ_EXAMPLES`` (default 25 per entry, what CI
runs) sets the hypothesis profile "fastbp-fuzz"; e.g.
``FASTBP_FUZZ_EXAMPLES=2000 pytest tests/fuzz/test_fuzz.py`` for a long run.

Adding a function or an argument: one entry (or one Arg) in ``table.py``.
Say, rnn_forward gains ``lengths=`` (int (B,)) and ``reset=`` (bool (T, B)):

    Arg("lengths", ("B",), kind="lengths", optional=True),   # ints in [0, T]
    Arg("reset", ("T", "B"), kind="mask", optional=True),    # booleans

in rnn_forward's ``args`` list, the call passing ``lengths=a["lengths"],
reset=a["reset"]`` and the reference passing the converted values
``c["lengths"]``, ``c["reset"]`` to ``fastbp.reference.rnn_forward``. A new
function is an ``Entry(id, args, call, reference, dims=..., options=...)``;
see the existing entries, and the docstrings of ``Arg`` and ``Entry``.
"""
import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("FASTBP_FUZZ_EXAMPLES", "25"))

settings.register_profile(
    "fastbp-fuzz", max_examples=EXAMPLES, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
FUZZ_SETTINGS = settings.get_profile("fastbp-fuzz")
