# Elman RNN forward and BPTT (src_c/rnn.c). Arrays arrive validated, C-contiguous
# and in one dtype from fastbp/rnn.py; every call runs a whole sequence with the
# GIL released. Sequence buffers are 2-D (rows, width) views in the slot
# layout of src_c/seq.h that a Schedule describes (plain (T·B, ·) rows without
# lengths).

cdef extern from "rnn.h":
    int fbp_rnn_forward_f(float *hs, float *pre, float *work, const float *x, const float *W_ih,
                          const float *W_hh, const float *b_ih, const float *b_hh, float *pack,
                          const fbp_seq *seq, int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_forward_d(double *hs, double *pre, double *work, const double *x, const double *W_ih,
                          const double *W_hh, const double *b_ih, const double *b_hh, double *pack,
                          const fbp_seq *seq, int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_backward_f(float *dx, float *dh0, float *dW_ih, float *dW_hh, float *db, float *delta,
                           float *work, const float *dy, const float *dh_n, float *hs, const float *x,
                           const float *W_ih, const float *W_hh, float *pack, const fbp_seq *seq,
                           int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_backward_d(double *dx, double *dh0, double *dW_ih, double *dW_hh, double *db,
                           double *delta, double *work, const double *dy, const double *dh_n,
                           double *hs, const double *x, const double *W_ih, const double *W_hh,
                           double *pack, const fbp_seq *seq, int T, int B, int I, int H,
                           int act) noexcept nogil
    Py_ssize_t fbp_rnn_pack_size_f(int H) noexcept nogil
    Py_ssize_t fbp_rnn_pack_size_d(int H) noexcept nogil


def rnn_pack_size(int H, bint double_precision):
    """Elements of the workspace that makes the RNN kernels run the recurrent
    products on their own packed copy of W_hh instead of through BLAS."""
    return fbp_rnn_pack_size_d(H) if double_precision else fbp_rnn_pack_size_f(H)


cdef int _check_rnn_pack(pack, int H, bint double_precision) except -1:
    if pack is not None and pack.shape[0] < rnn_pack_size(H, double_precision):
        raise ValueError(f"pack: expected at least {rnn_pack_size(H, double_precision)} elements, "
                         f"got {pack.shape[0]}")
    return 0


cdef int _check_rnn_buffers(Schedule sched, hs, x, work, int I, int H, bint backward) except -1:
    _check_rows(hs, sched.state_rows, H, "hs")
    _check_rows(x, sched.slots, I, "x")
    need = sched.work_size(H, 1, backward)
    if need and (work is None or work.shape[0] < need):
        raise ValueError(f"work: expected at least {need} elements")
    return 0


def rnn_forward(floating[:, ::1] hs, floating[:, ::1] pre, floating[::1] work,
                const floating[:, ::1] x, const floating[:, ::1] weight_ih,
                const floating[:, ::1] weight_hh, const floating[::1] bias_ih,
                const floating[::1] bias_hh, floating[::1] pack, Schedule sched, int act):
    """Whole-sequence forward on seq.h's slot layout (plain (T·B, ·) rows
    without lengths).

    hs (state_rows, H): block 0 = h0 on entry; h_t after. pre (slots, H): the
    input side, needed with lengths; None keeps it in hs. work:
    sched.work_size(H, 1, False) elements (None without resets). x (slots, I),
    weight_ih (H, I), weight_hh (H, H), bias_ih (H), bias_hh (H). pack:
    workspace of rnn_pack_size(H) elements for the packed recurrent product,
    or None for BLAS. I may be 0.
    """
    cdef int T = sched.T, B = sched.B, I = <int>x.shape[1]
    cdef int H = <int>weight_hh.shape[0]
    cdef bint has_pack = pack is not None
    cdef bint has_pre = pre is not None
    cdef bint has_work = work is not None and work.shape[0] > 0
    cdef const fbp_seq *seq = _seq_ptr(sched)
    _check_rnn_pack(pack, H, floating is double)
    _check_rnn_buffers(sched, hs, x, work, I, H, False)
    if has_pre:
        _check_rows(pre, sched.slots, H, "pre")
    elif sched.has_lengths:
        raise ValueError("pre: needed with lengths")
    if T == 0 or B == 0 or H == 0:
        return
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_rnn_forward_f(&hs[0, 0], &pre[0, 0] if has_pre else NULL,
                                   &work[0] if has_work else NULL, &x[0, 0] if I else NULL,
                                   &weight_ih[0, 0] if I else NULL, &weight_hh[0, 0],
                                   &bias_ih[0], &bias_hh[0], &pack[0] if has_pack else NULL,
                                   seq, T, B, I, H, act)
        else:
            st = fbp_rnn_forward_d(&hs[0, 0], &pre[0, 0] if has_pre else NULL,
                                   &work[0] if has_work else NULL, &x[0, 0] if I else NULL,
                                   &weight_ih[0, 0] if I else NULL, &weight_hh[0, 0],
                                   &bias_ih[0], &bias_hh[0], &pack[0] if has_pack else NULL,
                                   seq, T, B, I, H, act)
    check_status(st)


def rnn_backward(floating[:, ::1] dh0, floating[:, ::1] dweight_ih, floating[:, ::1] dweight_hh,
                 floating[::1] dbias, floating[:, ::1] delta, floating[:, ::1] dx,
                 floating[::1] work, const floating[:, ::1] dy, const floating[:, ::1] dh_n,
                 floating[:, ::1] hs, const floating[:, ::1] x,
                 const floating[:, ::1] weight_ih, const floating[:, ::1] weight_hh,
                 floating[::1] pack, Schedule sched, int act):
    """BPTT on the slot layout: dh0 (B, H) and dx (slots, I) (None: not
    computed) are written; dweight_ih (H, I), dweight_hh (H, H), dbias (H) are
    ACCUMULATED (+=); delta (slots, H) is workspace and holds δ_t on exit.
    dy (slots, H) and dh_n (B, H: ∂L/∂h at each row's last step) may be None
    (zeros); hs (its reset rows are swapped during the call and restored), x,
    weights, pack as for rnn_forward; work: sched.work_size(H, 1, True).
    (The first argument is never None: Cython picks the float or double
    version from it.)
    """
    cdef int T = sched.T, B = sched.B, I = <int>x.shape[1]
    cdef int H = <int>weight_hh.shape[0]
    cdef bint want_dx = dx is not None and I > 0
    cdef bint has_dy = dy is not None
    cdef bint has_dh_n = dh_n is not None
    cdef bint has_pack = pack is not None
    cdef bint has_work = work is not None and work.shape[0] > 0
    cdef const fbp_seq *seq = _seq_ptr(sched)
    _check_rnn_pack(pack, H, floating is double)
    _check_rnn_buffers(sched, hs, x, work, I, H, True)
    _check_rows(delta, sched.slots, H, "delta")
    if has_dy:
        _check_rows(dy, sched.slots, H, "dy")
    if want_dx:
        _check_rows(dx, sched.slots, I, "dx")
    if dh0.shape[0] != B or dh0.shape[1] != H or (has_dh_n and (dh_n.shape[0] != B
                                                                or dh_n.shape[1] != H)):
        raise ValueError(f"dh0, dh_n: expected ({B}, {H})")
    if B == 0 or H == 0:
        return
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_rnn_backward_f(&dx[0, 0] if want_dx else NULL, &dh0[0, 0],
                                    &dweight_ih[0, 0] if I else NULL, &dweight_hh[0, 0], &dbias[0],
                                    &delta[0, 0] if T else NULL, &work[0] if has_work else NULL,
                                    &dy[0, 0] if has_dy else NULL,
                                    &dh_n[0, 0] if has_dh_n else NULL, &hs[0, 0],
                                    &x[0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                    &weight_hh[0, 0], &pack[0] if has_pack else NULL,
                                    seq, T, B, I, H, act)
        else:
            st = fbp_rnn_backward_d(&dx[0, 0] if want_dx else NULL, &dh0[0, 0],
                                    &dweight_ih[0, 0] if I else NULL, &dweight_hh[0, 0], &dbias[0],
                                    &delta[0, 0] if T else NULL, &work[0] if has_work else NULL,
                                    &dy[0, 0] if has_dy else NULL,
                                    &dh_n[0, 0] if has_dh_n else NULL, &hs[0, 0],
                                    &x[0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                    &weight_hh[0, 0], &pack[0] if has_pack else NULL,
                                    seq, T, B, I, H, act)
    check_status(st)
