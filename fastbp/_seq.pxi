# Variable lengths and reset events (src_c/seq.h): the Schedule the recurrent
# engine takes, and the copies between the caller's (T, B, D) layout and
# the kernels' slot layout. fastbp/_sequence.py builds Schedules from the
# user's `lengths` and `reset`.

cdef extern from "seq.h":
    ctypedef struct fbp_seq:
        const int *rows
        const int *reset_ptr
        const int *reset_rows
    int fbp_seq_check(const fbp_seq *seq, int T, int B, Py_ssize_t *events) noexcept nogil
    void fbp_seq_gather_f(float *dst, const float *src, Py_ssize_t ldc, const int *order,
                          const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                          int reverse) noexcept nogil
    void fbp_seq_gather_d(double *dst, const double *src, Py_ssize_t ldc, const int *order,
                          const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                          int reverse) noexcept nogil
    void fbp_seq_scatter_f(float *dst, Py_ssize_t ldc, const float *src, const int *order,
                           const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                           int reverse, int accumulate) noexcept nogil
    void fbp_seq_scatter_d(double *dst, Py_ssize_t ldc, const double *src, const int *order,
                           const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                           int reverse, int accumulate) noexcept nogil

def _frozen(a):
    """An int32 copy of `a` that nobody can write: the kernels read a
    Schedule's arrays without the GIL, after it checked them once. (An array
    over a bytes object cannot be made writeable again.)"""
    a = _np.ascontiguousarray(a, dtype=_np.int32)
    return _np.frombuffer(a.tobytes(), dtype=_np.int32).reshape(a.shape)


cdef class Schedule:
    """Which rows run at each step, in the kernels' sorted row order.

    Schedule(T, B, order=None, lengths=None, reset_ptr=None, reset_rows=None)

    order (B,) int32: the caller's row of each sorted row (a permutation);
    lengths (B,) int32: the sorted rows' lengths, non-increasing, in [0, T];
    both None for full-length rows. reset_ptr (T+1,) and reset_rows int32:
    the reset events as CSR over steps (src_c/seq.h), or None. Every
    consistency rule the kernels rely on is checked here, once.

    Attributes: T, B, slots (M of seq.h: rows of the input and gate buffers),
    state_rows (rows of hs/cs), events (number of resets), has_lengths,
    has_resets, order, lengths, rows (n_t), starts (s_t, t = 0..T, int64).
    """
    cdef fbp_seq seq
    cdef readonly int T, B
    cdef readonly Py_ssize_t slots, state_rows, events
    cdef readonly object order, lengths, rows, reset_ptr, reset_rows, starts
    cdef const int[::1] _order, _lengths, _rows, _ptr, _ev

    def __cinit__(self, int T, int B, order=None, lengths=None, reset_ptr=None, reset_rows=None):
        import numpy as np
        if T < 0 or B < 0:
            raise ValueError(f"Schedule: expected T, B >= 0, got T={T}, B={B}")
        self.T, self.B = T, B
        self.seq.rows = NULL
        self.seq.reset_ptr = NULL
        self.seq.reset_rows = NULL
        if (order is None) != (lengths is None):
            raise ValueError("Schedule: order and lengths go together")
        if order is not None:
            self.order = _frozen(order)
            self.lengths = _frozen(lengths)
            if self.order.shape != (B,) or self.lengths.shape != (B,):
                raise ValueError(f"Schedule: order and lengths must have shape ({B},)")
            if B and (not np.array_equal(np.sort(self.order), np.arange(B))
                      or self.lengths.min() < 0 or self.lengths.max() > T
                      or np.any(np.diff(self.lengths) > 0)):
                raise ValueError("Schedule: order must be a permutation and lengths "
                                 f"non-increasing in [0, {T}]")
            # n_t = number of rows with length > t (-lengths is sorted ascending)
            self.rows = _frozen(np.searchsorted(-self.lengths, -np.arange(T), side="left"))
            self._order, self._lengths, self._rows = self.order, self.lengths, self.rows
            if T:
                self.seq.rows = &self._rows[0]
        if (reset_ptr is None) != (reset_rows is None):
            raise ValueError("Schedule: reset_ptr and reset_rows go together")
        if reset_ptr is not None:
            self.reset_ptr = _frozen(reset_ptr)
            self.reset_rows = _frozen(reset_rows)
            if self.reset_ptr.shape != (T + 1,) or self.reset_rows.ndim != 1:
                raise ValueError(f"Schedule: reset_ptr must have shape ({T + 1},)")
            if self.reset_ptr[T] > self.reset_rows.shape[0]:
                raise ValueError("Schedule: reset_ptr points past reset_rows")
            self._ptr = self.reset_ptr
            self.seq.reset_ptr = &self._ptr[0]
            if self.reset_rows.shape[0]:
                self._ev = self.reset_rows
                self.seq.reset_rows = &self._ev[0]
        cdef Py_ssize_t events = 0
        if fbp_seq_check(&self.seq, T, B, &events) != FBP_OK:
            raise ValueError("Schedule: reset events must lie at steps t >= 1, on rows still "
                             "active, increasing within each step")
        self.events = events
        n = self.rows if self.rows is not None else np.full(T, B, dtype=np.int32)
        blocks = np.concatenate(([B], n)).astype(np.int64)    # m_t, t = 0..T
        self.starts = np.concatenate(([0], np.cumsum(blocks[:T])))   # (Python reads it, C never)
        self.slots = int(self.starts[T])
        self.state_rows = self.slots + (int(blocks[T]) if T else B)

    @property
    def has_lengths(self):
        return self.seq.rows != NULL

    @property
    def has_resets(self):
        return self.seq.reset_ptr != NULL and self.events > 0

    cdef const fbp_seq *ptr(self):
        return &self.seq

    def __repr__(self):
        return (f"Schedule(T={self.T}, B={self.B}, lengths={self.has_lengths}, "
                f"events={self.events}, slots={self.slots})")


cdef inline const fbp_seq *_seq_ptr(Schedule sched):
    return &sched.seq if sched.has_lengths or sched.has_resets else NULL


cdef int _check_rows(arr, Py_ssize_t need, Py_ssize_t width, str name) except -1:
    if arr.shape[0] < need or arr.shape[1] != width:
        raise ValueError(f"{name}: expected at least ({need}, {width}), got {tuple(arr.shape)}")
    return 0


cdef Py_ssize_t _caller_ld(arr, int T, int B, Py_ssize_t itemsize, str name) except -1:
    """Row stride (elements) of a (T, B, D) caller-layout array whose rows may be
    column slices of a wider array: unit stride along D, B rows of ld elements
    per step."""
    if arr.shape[0] != T or arr.shape[1] != B:
        raise ValueError(f"{name}: expected shape ({T}, {B}, D), got {tuple(arr.shape)}")
    cdef Py_ssize_t D = arr.shape[2]
    if T == 0 or B == 0 or D == 0:
        return D
    s0, s1, s2 = arr.strides[0], arr.strides[1], arr.strides[2]
    if (D > 1 and s2 != itemsize) or s1 % itemsize or s1 < D * itemsize or (T > 1 and s0 != B * s1):
        raise ValueError(f"{name}: expected rows of unit stride, B rows per step "
                         f"(a C-contiguous array or a column slice of one), got strides "
                         f"{tuple(arr.strides)}")
    return s1 // itemsize


cdef inline const int *_order_ptr(Schedule sched):
    return &sched._order[0] if sched.has_lengths and sched.B else NULL


cdef inline const int *_lengths_ptr(Schedule sched):
    return &sched._lengths[0] if sched.has_lengths and sched.B else NULL


def seq_gather(floating[:, ::1] dst, const floating[:, :, :] src, Schedule sched,
               bint block, bint reverse):
    """dst(slots or state rows, D) ← src(T, B, D) in sorted row order (block 1:
    the layout of hs's output blocks); padding rows zero. reverse: step t of a
    row of length L reads time L − 1 − t. src may be a column slice of a wider
    C-contiguous (T, B, ·) array."""
    cdef int T = sched.T, B = sched.B, D = <int>src.shape[2]
    cdef Py_ssize_t ldc = _caller_ld(src, T, B, sizeof(floating), "src")
    _check_rows(dst, sched.state_rows if block else sched.slots, D, "dst")
    if T == 0 or B == 0 or D == 0:
        return
    cdef const int *order = _order_ptr(sched)
    cdef const int *lengths = _lengths_ptr(sched)
    with nogil:
        if floating is float:
            fbp_seq_gather_f(&dst[0, 0], &src[0, 0, 0], ldc, order, lengths, &sched.seq, T, B, D,
                             block, reverse)
        else:
            fbp_seq_gather_d(&dst[0, 0], &src[0, 0, 0], ldc, order, lengths, &sched.seq, T, B, D,
                             block, reverse)


def seq_scatter(floating[:, :, :] dst, const floating[:, ::1] src, Schedule sched,
                bint block, bint reverse, bint accumulate=False):
    """dst(T, B, D) ← src slots in the caller's row order (accumulate: +=), and
    unless accumulating zeros past each length. reverse as for seq_gather; dst
    may be a column slice of a wider C-contiguous (T, B, ·) array."""
    cdef int T = sched.T, B = sched.B, D = <int>dst.shape[2]
    cdef Py_ssize_t ldc = _caller_ld(dst, T, B, sizeof(floating), "dst")
    _check_rows(src, sched.state_rows if block else sched.slots, D, "src")
    if T == 0 or B == 0 or D == 0:
        return
    cdef const int *order = _order_ptr(sched)
    cdef const int *lengths = _lengths_ptr(sched)
    with nogil:
        if floating is float:
            fbp_seq_scatter_f(&dst[0, 0, 0], ldc, &src[0, 0], order, lengths, &sched.seq, T, B, D,
                              block, reverse, accumulate)
        else:
            fbp_seq_scatter_d(&dst[0, 0, 0], ldc, &src[0, 0], order, lengths, &sched.seq, T, B, D,
                              block, reverse, accumulate)
