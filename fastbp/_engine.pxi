# The recurrent engine (src_c/engine.h): one forward and one backward for every
# cell, one or two directions per call, the GIL released once. Arguments are
# dicts of named arrays, filled into the engine's structs by name; every array
# is checked here (type, dtype, C-contiguity, writability, shape) against the
# sizes passed to C, and its buffer is held until the call returns, so nothing
# a caller or another thread does to it meanwhile can make C read out of bounds.

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_WRITABLE)

cdef extern from "engine.h":
    enum:
        FBP_MAX_STATES
        FBP_ENGINE_TEAM_MIN_MACS
        FBP_ENGINE_TEAM_MIN_WEIGHT_BYTES
        FBP_CELL_RNN
        FBP_CELL_LSTM
        FBP_CELL_GRU
    ctypedef struct fbp_cell:
        int kind
        int act
    ctypedef struct fbp_cell_info:
        int gates
        int states
        int saved
        int separate
    ctypedef struct fbp_dims:
        int T
        int B
        int I
        int H
    ctypedef struct fbp_weights:
        const void *W_ih
        const void *W_hh
        const void *b_ih
        const void *b_hh
        const void *peep
    ctypedef struct fbp_weight_grads:
        void *W_ih
        void *W_hh
        void *b_ih
        void *b_hh
        void *peep
    ctypedef struct fbp_run:
        const void *x
        void *state[2]
        void *gates
    ctypedef struct fbp_run_grads:
        void *dgates
        void *drec
        void *dx
        void *dstate[2]
        const void *dy
    ctypedef struct fbp_scratch:
        void *work
        void *pack
        void *rec
    int fbp_cell_describe(fbp_cell cell, fbp_cell_info *info) noexcept nogil
    int fbp_engine_forward_f(int D, fbp_run *run, const fbp_weights *weights,
                             const fbp_scratch *scratch, fbp_cell cell, const fbp_seq **seq,
                             fbp_dims dims) noexcept nogil
    int fbp_engine_forward_d(int D, fbp_run *run, const fbp_weights *weights,
                             const fbp_scratch *scratch, fbp_cell cell, const fbp_seq **seq,
                             fbp_dims dims) noexcept nogil
    int fbp_engine_backward_f(int D, fbp_run_grads *grads, fbp_weight_grads *dweights,
                              fbp_run *run, const fbp_weights *weights,
                              const fbp_scratch *scratch, fbp_cell cell, const fbp_seq **seq,
                              fbp_dims dims) noexcept nogil
    int fbp_engine_backward_d(int D, fbp_run_grads *grads, fbp_weight_grads *dweights,
                              fbp_run *run, const fbp_weights *weights,
                              const fbp_scratch *scratch, fbp_cell cell, const fbp_seq **seq,
                              fbp_dims dims) noexcept nogil
    Py_ssize_t fbp_engine_work_size(fbp_cell cell, int B, int H, Py_ssize_t events,
                                    int backward) noexcept nogil
    Py_ssize_t fbp_engine_pack_size_f(fbp_cell cell, int H) noexcept nogil
    Py_ssize_t fbp_engine_pack_size_d(fbp_cell cell, int H) noexcept nogil
    int fbp_engine_step_products_f(fbp_cell cell, float *gates, float *dh, const float *hs,
                                   const float *W_hh, float *pack, int T, int B,
                                   int H) noexcept nogil
    int fbp_engine_step_products_d(fbp_cell cell, double *gates, double *dh, const double *hs,
                                   const double *W_hh, double *pack, int T, int B,
                                   int H) noexcept nogil

# the cell codes of src_c/engine.h, for fastbp/_recurrent.py
CELL_RNN, CELL_LSTM, CELL_GRU = FBP_CELL_RNN, FBP_CELL_LSTM, FBP_CELL_GRU
# a call's per-step product (B·G·H² multiply-adds) below which it runs on its caller
# alone; from half that, with a W_hh of ENGINE_TEAM_MIN_WEIGHT_BYTES or more, on the team
ENGINE_TEAM_MIN_MACS = FBP_ENGINE_TEAM_MIN_MACS
ENGINE_TEAM_MIN_WEIGHT_BYTES = FBP_ENGINE_TEAM_MIN_WEIGHT_BYTES


cdef fbp_cell _cell(int kind, int act) except *:
    cdef fbp_cell cell
    cdef fbp_cell_info info
    cell.kind = kind
    cell.act = act
    if fbp_cell_describe(cell, &info) != FBP_OK:
        raise ValueError(f"cell: unknown kind {kind} or activation {act}")
    return cell


def cell_info(int kind, int act=0):
    """The engine's facts about a cell: gates (G), states (S), saved (the gate
    buffer's width in units of H; 0: none) and separate (the recurrent product
    is kept apart from the input side)."""
    cdef fbp_cell_info info
    fbp_cell_describe(_cell(kind, act), &info)
    return {"gates": info.gates, "states": info.states, "saved": info.saved,
            "separate": bool(info.separate)}


def engine_work_size(int kind, int act, Schedule sched, int H, bint backward):
    """Elements of scratch["work"] for a schedule (0 without reset events)."""
    return fbp_engine_work_size(_cell(kind, act), sched.B, H, sched.events, backward)


def engine_pack_size(int kind, int act, int H, bint double_precision):
    """Elements of scratch["pack"]: the workspace that runs the per-step
    products on fastbp's packed kernel instead of BLAS."""
    cdef fbp_cell cell = _cell(kind, act)
    return fbp_engine_pack_size_d(cell, H) if double_precision else fbp_engine_pack_size_f(cell, H)


cdef class _Pinned:
    """The buffers of one engine call, held from the check until the call
    returns (a held buffer cannot be resized or freed under C)."""
    cdef Py_buffer views[64]
    cdef int count
    cdef object dtype

    def __cinit__(self, dtype):
        self.count = 0
        self.dtype = dtype

    def __dealloc__(self):
        cdef int i
        for i in range(self.count):
            PyBuffer_Release(&self.views[i])

    cdef void *take(self, arr, str name, Py_ssize_t rows, Py_ssize_t cols, bint writable,
                    bint optional=False, bint at_least=False) except? NULL:
        """The data of a C-contiguous array of self.dtype: (rows, cols) when
        cols >= 0 (rows or more if at_least), else (rows,). NULL for an optional
        None, and for an array without elements (C reads none)."""
        if arr is None:
            if optional:
                return NULL
            raise ValueError(f"{name}: expected an array, got None")
        if not isinstance(arr, _np.ndarray):
            raise TypeError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: expected dtype {self.dtype}, got {arr.dtype}")
        if cols < 0:
            want = (rows,)
        else:
            want = (rows, cols)
        shape = arr.shape
        if (len(shape) != len(want) or (cols >= 0 and shape[1] != cols)
                or (shape[0] < rows if at_least else shape[0] != rows)):
            raise ValueError(f"{name}: expected shape {'at least ' if at_least else ''}"
                             f"{want}, got {shape}")
        return self._hold(arr, name, writable).buf if arr.size else NULL

    cdef void *take_flat(self, arr, str name, Py_ssize_t n, bint writable) except? NULL:
        """The data of a C-contiguous array of self.dtype with n elements
        (any shape)."""
        if type(arr) is not _np.ndarray:
            raise TypeError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: expected dtype {self.dtype}, got {arr.dtype}")
        cdef Py_buffer *view = self._hold(arr, name, writable)
        if view.len != n * view.itemsize:
            raise ValueError(f"{name}: expected {n} elements, got {arr.size}")
        if <size_t>view.buf % <size_t>view.itemsize:
            raise ValueError(f"{name}: expected an aligned array")
        return view.buf if n else NULL

    cdef Py_buffer *_hold(self, arr, str name, bint writable) except NULL:
        """Acquire arr's buffer (C-contiguous, writable if asked), held until
        this object is freed."""
        if self.count == 64:
            raise RuntimeError("engine call: too many buffers")
        cdef int flags = PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
        try:
            PyObject_GetBuffer(arr, &self.views[self.count], flags)
        except BufferError as e:
            raise ValueError(f"{name}: expected a C-contiguous"
                             f"{' writable' if writable else ''} array ({e})") from None
        self.count += 1
        return &self.views[self.count - 1]


cdef class _Call:
    """One engine call's cell, sizes, schedules and pinned buffers."""
    cdef fbp_cell cell
    cdef fbp_cell_info info
    cdef fbp_dims dims
    cdef int D
    cdef const fbp_seq *seq[2]
    cdef list scheds                # each direction's Schedule
    cdef bint double_precision
    cdef _Pinned pin
    cdef fbp_scratch scratch

    def __cinit__(self, int kind, int act, int D, Schedule sched, Schedule sched_r, x, int H):
        self.cell = _cell(kind, act)
        fbp_cell_describe(self.cell, &self.info)
        if D < 1 or D > 2:
            raise ValueError(f"runs: expected 1 or 2 directions, got {D}")
        if D == 2:
            if sched_r is None:
                raise ValueError("sched_r: needed for the reverse direction")
            if (sched_r.T != sched.T or sched_r.B != sched.B or sched_r.slots != sched.slots
                    or sched_r.has_lengths != sched.has_lengths
                    or (sched.has_lengths and not (sched_r.rows == sched.rows).all())):
                raise ValueError("sched_r: expected the forward schedule's rows (only the "
                                 "reset events may differ)")
        if not isinstance(x, _np.ndarray) or x.ndim != 2:
            raise ValueError("runs[0]['x']: expected a 2-D array (slots, I)")
        if H < 1:
            raise ValueError(f"H: expected >= 1, got {H}")
        self.D = D
        self.scheds = [sched, sched_r if D == 2 else sched]
        self.seq[0] = _seq_ptr(sched)
        self.seq[1] = _seq_ptr(self.scheds[1])
        self.dims.T, self.dims.B, self.dims.I, self.dims.H = sched.T, sched.B, x.shape[1], H
        if x.dtype != _np.float64 and x.dtype != _np.float32:
            raise TypeError(f"x: expected float32 or float64, got {x.dtype}")
        self.double_precision = x.dtype == _np.float64
        self.pin = _Pinned(x.dtype)

    cdef int take_scratch(self, dict scratch, bint backward) except -1:
        cdef int H = self.dims.H, B = self.dims.B, d
        cdef Py_ssize_t need = 0, pack_need
        for d in range(self.D):
            need = max(need, fbp_engine_work_size(self.cell, B, H,
                                                  (<Schedule>self.scheds[d]).events, backward))
        work = scratch.get("work")
        if need and (work is None or work.ndim != 1 or work.shape[0] < need):
            raise ValueError(f"scratch['work']: expected at least {need} elements")
        self.scratch.work = self.pin.take(work, "scratch['work']", work.shape[0], -1, True) \
            if need else NULL
        pack = scratch.get("pack")
        pack_need = (fbp_engine_pack_size_d(self.cell, H) if self.double_precision
                     else fbp_engine_pack_size_f(self.cell, H))
        if pack is not None and (pack.ndim != 1 or pack.shape[0] < pack_need):
            raise ValueError(f"scratch['pack']: expected at least {pack_need} elements")
        self.scratch.pack = self.pin.take(pack, "scratch['pack']", 0 if pack is None
                                          else pack.shape[0], -1, True, True)
        # one step's recurrent side, forward only, for separate cells
        self.scratch.rec = self.pin.take(scratch.get("rec"), "scratch['rec']", B,
                                         self.info.gates * H, True,
                                         backward or not self.info.separate, True)
        return 0

    cdef int take_weights(self, int d, dict w, fbp_weights *out) except -1:
        cdef int GH = self.info.gates * self.dims.H, H = self.dims.H, I = self.dims.I
        out.W_ih = self.pin.take(w["weight_ih"], "weight_ih", GH, I, False)
        out.W_hh = self.pin.take(w["weight_hh"], "weight_hh", GH, H, False)
        out.b_ih = self.pin.take(w["bias_ih"], "bias_ih", GH, -1, False)
        out.b_hh = self.pin.take(w["bias_hh"], "bias_hh", GH, -1, False)
        peep = w.get("peep")
        if peep is not None and self.cell.kind != FBP_CELL_LSTM:
            raise ValueError("peep: only the LSTM has peepholes")
        out.peep = self.pin.take(peep, "peep", 3, H, False, True)
        return 0

    cdef int take_run(self, int d, dict run, fbp_run *out, bint backward) except -1:
        cdef Schedule sc = self.scheds[d]
        cdef int H = self.dims.H, k
        out.x = self.pin.take(run["x"], "x", sc.slots, self.dims.I, False, False, True)
        states = run["states"]
        if len(states) != self.info.states:
            raise ValueError(f"states: expected {self.info.states} state buffers, got "
                             f"{len(states)}")
        for k in range(self.info.states):
            out.state[k] = self.pin.take(states[k], "states", sc.state_rows, H, True, False,
                                         True)
        for k in range(self.info.states, FBP_MAX_STATES):
            out.state[k] = NULL
        gates = run.get("gates")
        cdef int width = self.info.saved * H if self.info.saved else H
        # the RNN may leave it out (no lengths): the engine stages in the state buffer
        cdef bint optional = self.info.saved == 0 and not sc.has_lengths
        out.gates = self.pin.take(gates, "gates", sc.slots, width, True, optional, True)
        return 0

    cdef int run_forward(self, fbp_run *runs, fbp_weights *weights) except -1:
        cdef int st
        if self.dims.T == 0 or self.dims.B == 0:
            return 0
        with nogil:
            if self.double_precision:
                st = fbp_engine_forward_d(self.D, runs, weights, &self.scratch, self.cell,
                                          self.seq, self.dims)
            else:
                st = fbp_engine_forward_f(self.D, runs, weights, &self.scratch, self.cell,
                                          self.seq, self.dims)
        return check_status(st)


cdef object _dtype_of(list runs):
    if not runs or not isinstance(runs[0], dict) or "x" not in runs[0]:
        raise ValueError("runs: expected 1 or 2 dicts with 'x', 'states', 'gates'")
    return runs[0]["x"]


def engine_forward(int kind, int act, list runs, list weights, dict scratch, Schedule sched,
                   Schedule sched_r=None):
    """Forward of one layer, every direction, one nogil call (src_c/engine.h).

    runs[d]: {"x": (slots, I), "states": [h buffer, (c buffer)] each
    (state_rows, H) with block 0 the initial state, "gates": (slots, saved·H)
    (the RNN: (slots, H), or None without lengths)}; weights[d]: {"weight_ih"
    (G·H, I), "weight_hh" (G·H, H), "bias_ih", "bias_hh" (G·H), "peep" (3, H)
    or None (LSTM)}; scratch: {"work", "pack" (None: BLAS), "rec" (separate
    cells: (B, G·H))}. Direction 1 runs on sched_r. One dtype throughout.
    """
    x = _dtype_of(runs)
    if len(weights) != len(runs):
        raise ValueError("weights: expected one dict per direction")
    H = weights[0]["weight_hh"].shape[1] if weights[0]["weight_hh"].ndim == 2 else 0
    cdef _Call call = _Call(kind, act, len(runs), sched, sched_r, x, H)
    cdef fbp_run r[2]
    cdef fbp_weights w[2]
    cdef int d
    call.take_scratch(scratch, False)
    for d in range(call.D):
        call.take_weights(d, weights[d], &w[d])
        call.take_run(d, runs[d], &r[d], False)
    if call.D == 2 and (w[0].peep == NULL) != (w[1].peep == NULL):
        raise ValueError("peep: both directions or neither")
    call.run_forward(r, w)


def engine_backward(int kind, int act, list grads, list dweights, list runs, list weights,
                    dict scratch, Schedule sched, Schedule sched_r=None):
    """BPTT of one layer, every direction, one nogil call (src_c/engine.h).

    grads[d]: {"dgates": (slots, G·H) out (the LSTM's may be runs[d]["gates"],
    consumed), "drec": (slots, G·H) out for separate cells (GRU) else None,
    "dx": (slots, I) out or None, "dstates": [dh, (dc)] (B, H) each, in: the
    final states' gradients, out: the initial states', "dy": (slots, H) or
    None}; dweights[d]: {"weight_ih", "weight_hh", "bias_ih", "bias_hh" (GRU
    only; the others' equals bias_ih), "peep"} ACCUMULATED (+=); runs,
    weights, scratch, schedules as for engine_forward (the state buffers'
    reset rows are swapped during the call and put back).
    """
    x = _dtype_of(runs)
    if not (len(grads) == len(dweights) == len(weights) == len(runs)):
        raise ValueError("grads, dweights, weights: expected one dict per direction")
    H = weights[0]["weight_hh"].shape[1] if weights[0]["weight_hh"].ndim == 2 else 0
    cdef _Call call = _Call(kind, act, len(runs), sched, sched_r, x, H)
    cdef fbp_run r[2]
    cdef fbp_weights w[2]
    cdef fbp_run_grads g[2]
    cdef fbp_weight_grads dw[2]
    cdef int d, k, st
    cdef int I = call.dims.I, B = call.dims.B, GH = call.info.gates * H
    cdef Schedule sc
    call.take_scratch(scratch, True)
    for d in range(call.D):
        sc = call.scheds[d]
        call.take_weights(d, weights[d], &w[d])
        call.take_run(d, runs[d], &r[d], True)
        if call.info.saved and runs[d].get("gates") is None:
            raise ValueError("gates: needed by this cell's backward")
        gd, dwd = grads[d], dweights[d]
        g[d].dgates = call.pin.take(gd["dgates"], "dgates", sc.slots, GH, True, False, True)
        g[d].drec = call.pin.take(gd.get("drec"), "drec", sc.slots, GH, True,
                                  not call.info.separate, True)
        if not call.info.separate:
            g[d].drec = NULL
        g[d].dx = call.pin.take(gd.get("dx"), "dx", sc.slots, I, True, True, True)
        g[d].dy = call.pin.take(gd.get("dy"), "dy", sc.slots, H, False, True, True)
        dstates = gd["dstates"]
        if len(dstates) != call.info.states:
            raise ValueError(f"dstates: expected {call.info.states} arrays, got {len(dstates)}")
        for k in range(call.info.states):
            g[d].dstate[k] = call.pin.take(dstates[k], "dstates", B, H, True)
        for k in range(call.info.states, FBP_MAX_STATES):
            g[d].dstate[k] = NULL
        dw[d].W_ih = call.pin.take(dwd["weight_ih"], "dweight_ih", GH, I, True)
        dw[d].W_hh = call.pin.take(dwd["weight_hh"], "dweight_hh", GH, H, True)
        dw[d].b_ih = call.pin.take(dwd["bias_ih"], "dbias_ih", GH, -1, True)
        dw[d].b_hh = call.pin.take(dwd.get("bias_hh"), "dbias_hh", GH, -1, True,
                                   not call.info.separate)
        dw[d].peep = call.pin.take(dwd.get("peep"), "dpeep", 3, H, True, w[d].peep == NULL)
    if call.D == 2 and (w[0].peep == NULL) != (w[1].peep == NULL):
        raise ValueError("peep: both directions or neither")
    if call.dims.T == 0 or B == 0:
        return
    with nogil:
        if call.double_precision:
            st = fbp_engine_backward_d(call.D, g, dw, r, w, &call.scratch, call.cell, call.seq,
                                       call.dims)
        else:
            st = fbp_engine_backward_f(call.D, g, dw, r, w, &call.scratch, call.cell, call.seq,
                                       call.dims)
    check_status(st)


def engine_step_products(int kind, int act, floating[:, :, ::1] gates, floating[:, ::1] dh,
                         const floating[:, :, ::1] hs, const floating[:, ::1] weight_hh,
                         floating[::1] pack):
    """Benchmark hook: the per-step recurrent products alone (gates (T, B, G·H)
    accumulated, dh (B, H) overwritten, hs (T+1, B, H)); pack None for BLAS."""
    cdef fbp_cell cell = _cell(kind, act)
    cdef fbp_cell_info info
    fbp_cell_describe(cell, &info)
    cdef int T = <int>gates.shape[0], B = <int>gates.shape[1], H = <int>dh.shape[1]
    if (gates.shape[2] != info.gates * H or dh.shape[0] != B or hs.shape[0] != T + 1
            or hs.shape[1] != B or hs.shape[2] != H or weight_hh.shape[0] != info.gates * H
            or weight_hh.shape[1] != H or H < 1):
        raise ValueError("engine_step_products: inconsistent shapes")
    cdef Py_ssize_t need = (fbp_engine_pack_size_d(cell, H) if floating is double
                            else fbp_engine_pack_size_f(cell, H))
    if pack is not None and pack.shape[0] < need:
        raise ValueError(f"pack: expected at least {need} elements")
    if T == 0 or B == 0:
        return
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_engine_step_products_f(cell, &gates[0, 0, 0], &dh[0, 0], &hs[0, 0, 0],
                                            &weight_hh[0, 0],
                                            &pack[0] if pack is not None else NULL, T, B, H)
        else:
            st = fbp_engine_step_products_d(cell, &gates[0, 0, 0], &dh[0, 0], &hs[0, 0, 0],
                                            &weight_hh[0, 0],
                                            &pack[0] if pack is not None else NULL, T, B, H)
    check_status(st)


cdef extern from "team.h":
    enum:
        FBP_TEAM_MAX
    const char *FBP_TEAM_THREAD_NAME
    int fbp_team_set_size(int n) nogil
    int fbp_team_size() noexcept nogil
    void fbp_team_stall_state(int64_t *ago_ns, int64_t *backoff_ns) noexcept nogil
    long fbp_team_requests() noexcept nogil

TEAM_MAX = FBP_TEAM_MAX
TEAM_THREAD_NAME = FBP_TEAM_THREAD_NAME.decode()     # the worker threads' name


def team_set_size(int n):
    """Resize fastbp's thread team (src_c/team.h) to n members, the caller
    included (1: no worker threads). Waits for a region in flight to end."""
    cdef int st
    if n < 1 or n > FBP_TEAM_MAX:
        raise ValueError(f"n: expected 1 to {FBP_TEAM_MAX} threads, got {n}")
    with nogil:
        st = fbp_team_set_size(n)
    check_status(st)


def team_size():
    """The thread team's size (members, the caller included)."""
    return fbp_team_size()


def team_stall_state():
    """(seconds since a team member was last held up, or None if never; the
    back-off it set, in seconds): regions run on their callers alone for the
    back-off after a stall (src_c/team.h). Diagnostics and tests."""
    cdef int64_t ago, backoff
    fbp_team_stall_state(&ago, &backoff)
    return (None if ago < 0 else ago * 1e-9), backoff * 1e-9


def team_requests():
    """How many regions were asked of the team so far, however they ran (on
    the team, or on their caller alone: a busy team, a back-off): tells the
    calls large enough to share from the rest. Diagnostics and tests."""
    return fbp_team_requests()
