# A streamed call's compiled half (fastbp/_step.py): for one model and one
# call shape (k steps of B rows), the engine's structs of every layer, filled
# once over buffers the Python Stepper owns and this object holds, so that a
# call costs the copies in, one engine forward per layer and the readout, with
# the GIL released, instead of a dict-checking engine call per layer.

from libc.string cimport memcpy, memset
from cpython.mem cimport PyMem_Calloc, PyMem_Free

cdef class StepPlan:
    """StepPlan(kind, act, sched, x, states, gates, weights, peep_sources,
    scratch, weight_out, bias_out, many_to_one)

    One (k, B) call shape of ``model.step``. sched: Schedule(k, B); x (k·B, I)
    the layer-0 input buffer; states[l][q] ((k+1)·B, H): layer l's buffer of
    state q (block 0 the carried state, then each step's); gates: the gate
    buffer the layers share (or None where the cell needs none); weights[l]:
    the engine dict of layer l (its "peep" a (3, H) buffer this plan fills
    from peep_sources[l], three (H,) arrays, before every call); scratch: the
    engine's; weight_out (O, H), bias_out (O,): the readout. Layer l > 0 reads
    layer l − 1's h_1..h_k in place. Every buffer is checked and held here
    until the plan is freed.
    """
    cdef fbp_cell cell
    cdef fbp_cell_info info
    cdef fbp_dims dims
    cdef int L, S, k, B, H, I, O
    cdef bint dbl, many_to_one
    cdef size_t item
    cdef _Pinned pin
    cdef list held                  # the arrays behind every pointer below
    cdef Schedule sched
    cdef const fbp_seq *seq[2]
    cdef fbp_run *runs
    cdef fbp_weights *weights
    cdef fbp_scratch scratch
    cdef char *x
    cdef char **state               # [l·S + q]: layer l's buffer of state q
    cdef char **peep                # [l]: the stacked (3, H) peepholes, or NULL
    cdef const char **peep_src      # [3·l + j]
    cdef const char *W_out
    cdef const char *b_out

    def __cinit__(self):
        self.runs = NULL
        self.weights = NULL
        self.state = NULL
        self.peep = NULL
        self.peep_src = NULL

    def __dealloc__(self):
        PyMem_Free(self.runs)
        PyMem_Free(self.weights)
        PyMem_Free(self.state)
        PyMem_Free(self.peep)
        PyMem_Free(self.peep_src)

    def __init__(self, int kind, int act, Schedule sched, x, list states, gates, list weights,
                 list peep_sources, dict scratch, weight_out, bias_out, bint many_to_one):
        cdef int l, q, j
        self.cell = _cell(kind, act)
        fbp_cell_describe(self.cell, &self.info)
        if sched.has_lengths or sched.has_resets:
            raise ValueError("sched: a step has neither lengths nor resets")
        self.L, self.S = len(weights), self.info.states
        if self.L < 1 or len(states) != self.L or len(peep_sources) != self.L:
            raise ValueError("weights, states, peep_sources: expected one entry per layer")
        if not isinstance(x, _np.ndarray) or x.ndim != 2 or x.dtype not in (_np.float32,
                                                                                _np.float64):
            raise TypeError("x: expected a 2-D float32 or float64 array")
        self.dbl = x.dtype == _np.float64
        self.item = x.itemsize
        self.k, self.B, self.I = sched.T, sched.B, x.shape[1]
        self.H = weights[0]["weight_hh"].shape[1]
        self.O = weight_out.shape[0]
        self.many_to_one = many_to_one
        self.sched = sched
        self.seq[0] = _seq_ptr(sched)
        self.seq[1] = self.seq[0]
        self.pin = _Pinned(x.dtype)
        self.held = [x, states, gates, weights, peep_sources, scratch, weight_out, bias_out]
        self.runs = <fbp_run *>PyMem_Calloc(self.L, sizeof(fbp_run))
        self.weights = <fbp_weights *>PyMem_Calloc(self.L, sizeof(fbp_weights))
        self.state = <char **>PyMem_Calloc(self.L * self.S, sizeof(char *))
        self.peep = <char **>PyMem_Calloc(self.L, sizeof(char *))
        self.peep_src = <const char **>PyMem_Calloc(3 * self.L, sizeof(char *))
        if not (self.runs and self.weights and self.state and self.peep and self.peep_src):
            raise MemoryError()
        cdef int H = self.H, GH = self.info.gates * self.H
        cdef Py_ssize_t rows = <Py_ssize_t>self.k * self.B
        self.x = <char *>self.pin.take(x, "x", rows, self.I, True)
        cdef int width = self.info.saved * H if self.info.saved else H
        cdef void *g = self.pin.take(gates, "gates", rows, width, True, self.info.saved == 0)
        for l in range(self.L):
            w = weights[l]
            self.weights[l].W_ih = self.pin.take(w["weight_ih"], "weight_ih", GH,
                                                 self.I if l == 0 else H, False)
            self.weights[l].W_hh = self.pin.take(w["weight_hh"], "weight_hh", GH, H, False)
            self.weights[l].b_ih = self.pin.take(w["bias_ih"], "bias_ih", GH, -1, False)
            self.weights[l].b_hh = self.pin.take(w["bias_hh"], "bias_hh", GH, -1, False)
            peep = w.get("peep")
            if (peep is None) != (peep_sources[l] is None):
                raise ValueError("peep: a stacked buffer and its sources go together")
            if peep is not None:
                if self.cell.kind != FBP_CELL_LSTM or len(peep_sources[l]) != 3:
                    raise ValueError("peep: only the LSTM has peepholes (three)")
                self.peep[l] = <char *>self.pin.take(peep, "peep", 3, H, True)
                for j in range(3):
                    self.peep_src[3 * l + j] = <const char *>self.pin.take(
                        peep_sources[l][j], "peephole", H, -1, False)
            self.weights[l].peep = self.peep[l]
            if len(states[l]) != self.S:
                raise ValueError(f"states: expected {self.S} buffers per layer")
            for q in range(self.S):
                self.state[l * self.S + q] = <char *>self.pin.take(
                    states[l][q], "states", rows + self.B, H, True)
                self.runs[l].state[q] = self.state[l * self.S + q]
            self.runs[l].x = self.x if l == 0 else self.state[(l - 1) * self.S] + \
                self.B * H * self.item
            self.runs[l].gates = g
        self.scratch.work = NULL
        if fbp_engine_work_size(self.cell, self.B, H, 0, False):
            work = scratch.get("work")
            self.scratch.work = self.pin.take(work, "scratch['work']",
                                              fbp_engine_work_size(self.cell, self.B, H, 0,
                                                                   False), -1, True, False,
                                              True)
        pack = scratch.get("pack")
        self.scratch.pack = self.pin.take(pack, "scratch['pack']", 0 if pack is None
                                          else pack.shape[0], -1, True, True)
        self.scratch.rec = self.pin.take(scratch.get("rec"), "scratch['rec']", self.B, GH, True,
                                         not self.info.separate)
        self.W_out = <const char *>self.pin.take(weight_out, "weight_out", self.O, H, False)
        self.b_out = <const char *>self.pin.take(bias_out, "bias_out", self.O, -1, False)
        self.dims.T, self.dims.B, self.dims.H = self.k, self.B, H

    def step(self, x, state, bint stacked):
        """The common case of ``model.step`` in one call: x a C-contiguous,
        aligned array of the plan's dtype, (B, I) (when k = 1) or (k, B, I); state
        None, or the carried state as step returns it (one array, or a tuple
        of S for the LSTM, each C-contiguous and aligned, of the plan's dtype, (L, B, H)
        when stacked, else (B, H)). Returns (y, new state), or None when an
        argument is anything else or not finite (the caller converts it, or
        reports why, and calls run)."""
        cdef int type_num = cnp.NPY_DOUBLE if self.dbl else cnp.NPY_FLOAT
        cdef bint one = _plain_array(x, type_num, 2)
        if one:
            if self.k != 1 or not _has_shape(x, self.B, self.I, -1):
                return None
        elif not (_plain_array(x, type_num, 3) and _has_shape(x, self.k, self.B, self.I)):
            return None
        cdef int q
        if state is None:
            init = (None,) * self.S
        else:
            init = state if self.S > 1 else (state,)
            if type(init) is not tuple or len(init) != self.S:
                return None
            for s in init:
                if s is None:
                    continue
                if stacked:
                    if not (_plain_array(s, type_num, 3) and _has_shape(s, self.L, self.B, self.H)):
                        return None
                elif not (_plain_array(s, type_num, 2) and _has_shape(s, self.B, self.H, -1)):
                    return None
        cdef Py_ssize_t d0 = self.L if stacked else self.B
        cdef Py_ssize_t d1 = self.B if stacked else self.H
        cdef Py_ssize_t d2 = self.H if stacked else -1
        new = tuple([_new_array(type_num, d0, d1, d2) for q in range(self.S)])
        if self.many_to_one or one:
            y = _new_array(type_num, self.B, self.O, -1)
        else:
            y = _new_array(type_num, self.k, self.B, self.O)
        if self.run(x, init, y, new):
            return None         # not finite: the caller's checks say which
        return y, (new if self.S > 1 else new[0])

    def run(self, x, tuple init, y, tuple new):
        """One call: x (k·B·I elements) C-contiguous, init[q] None (zeros) or
        the carried state q (L·B·H elements: (L, B, H), or (B, H) for one
        layer), C-contiguous; y (k·B or B rows of O) and new[q] (like
        init[q]) are written. Returns 0, or −1 when x is not finite, or 1 + q
        when the carried state q is not."""
        cdef _Pinned pin = _Pinned(_np.float64 if self.dbl else _np.float32)
        cdef Py_ssize_t rows = <Py_ssize_t>self.k * self.B, BH = <Py_ssize_t>self.B * self.H
        cdef int l, q, st = 0, bad = 0
        cdef const char *xp = <const char *>pin.take_flat(x, "x", rows * self.I, False)
        cdef const char *ip[2]
        cdef char *np_[2]
        cdef Py_ssize_t out_rows = self.B if self.many_to_one else rows
        cdef char *yp = <char *>pin.take_flat(y, "y", out_rows * self.O, True)
        if len(init) != self.S or len(new) != self.S:
            raise ValueError(f"init, new: expected {self.S} states each")
        for q in range(self.S):
            ip[q] = NULL
            if init[q] is not None:
                ip[q] = <const char *>pin.take_flat(init[q], "state", self.L * BH, False)
            np_[q] = <char *>pin.take_flat(new[q], "new state", self.L * BH, True)
        cdef size_t item = self.item
        cdef const char *top
        cdef int H = self.H, O = self.O
        with nogil:
            memcpy(self.x, xp, rows * self.I * item)
            if not _finite_data(self.x, rows * self.I, self.dbl):
                bad = -1
            for q in range(self.S):
                if bad:
                    break
                for l in range(self.L):
                    if ip[q] == NULL:
                        memset(self.state[l * self.S + q], 0, BH * item)
                    else:
                        memcpy(self.state[l * self.S + q], ip[q] + l * BH * item, BH * item)
                if ip[q] != NULL and not _finite_data(ip[q], self.L * BH, self.dbl):
                    bad = 1 + q
            if not bad:
                for l in range(self.L):
                    if self.peep[l] != NULL:
                        for q in range(3):
                            memcpy(self.peep[l] + q * H * item, self.peep_src[3 * l + q],
                                   H * item)
                    self.dims.I = self.I if l == 0 else H
                    if self.dbl:
                        st = fbp_engine_forward_d(1, &self.runs[l], &self.weights[l],
                                                  &self.scratch, self.cell, self.seq, self.dims)
                    else:
                        st = fbp_engine_forward_f(1, &self.runs[l], &self.weights[l],
                                                  &self.scratch, self.cell, self.seq, self.dims)
                    if st:
                        break
        if bad or st:
            if st:
                check_status(st)
            return bad
        with nogil:
            # each layer's block k is its new state
            for q in range(self.S):
                for l in range(self.L):
                    memcpy(np_[q] + l * BH * item,
                           self.state[l * self.S + q] + self.k * BH * item, BH * item)
            # the readout: every step's top h, or (many-to-one) the top layer's h_k
            top = self.state[(self.L - 1) * self.S] + (self.k * BH if self.many_to_one
                                                        else BH) * item
            if self.dbl:
                fbp_rowdot_team_d(<double *>yp, O, <const double *>top, H,
                                  <const double *>self.W_out, H, <int>out_rows, O, H, 0)
                for l in range(out_rows):
                    for q in range(O):
                        (<double *>yp)[l * O + q] += (<const double *>self.b_out)[q]
            else:
                fbp_rowdot_team_f(<float *>yp, O, <const float *>top, H,
                                  <const float *>self.W_out, H, <int>out_rows, O, H, 0)
                for l in range(out_rows):
                    for q in range(O):
                        (<float *>yp)[l * O + q] += (<const float *>self.b_out)[q]
        return 0
