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
    int fbp_rnn_forward_dirs_f(int D, float **hs, float **pre, float *work, const float **x,
                               const float **W_ih, const float **W_hh, const float **b_ih,
                               const float **b_hh, float *pack, const fbp_seq **seq,
                               int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_forward_dirs_d(int D, double **hs, double **pre, double *work, const double **x,
                               const double **W_ih, const double **W_hh, const double **b_ih,
                               const double **b_hh, double *pack, const fbp_seq **seq,
                               int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_backward_dirs_f(int D, float **dx, float **dh0, float **dW_ih, float **dW_hh,
                                float **db, float **delta, float *work, const float **dy,
                                const float **dh_n, float **hs, const float **x,
                                const float **W_ih, const float **W_hh, float *pack,
                                const fbp_seq **seq, int T, int B, int I, int H,
                                int act) noexcept nogil
    int fbp_rnn_backward_dirs_d(int D, double **dx, double **dh0, double **dW_ih, double **dW_hh,
                                double **db, double **delta, double *work, const double **dy,
                                const double **dh_n, double **hs, const double **x,
                                const double **W_ih, const double **W_hh, double *pack,
                                const fbp_seq **seq, int T, int B, int I, int H,
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
    _check_matrix(weight_ih, H, I, "weight_ih")
    _check_matrix(weight_hh, H, H, "weight_hh")
    _check_vector(bias_ih, H, "bias_ih")
    _check_vector(bias_hh, H, "bias_hh")
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
    _check_matrix(weight_ih, H, I, "weight_ih")
    _check_matrix(weight_hh, H, H, "weight_hh")
    _check_matrix(dweight_ih, H, I, "dweight_ih")
    _check_matrix(dweight_hh, H, H, "dweight_hh")
    _check_vector(dbias, H, "dbias")
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


def rnn_forward_dirs(floating[::1] work, tuple dirs, floating[::1] pack, Schedule sched,
                     int act, Schedule sched_r=None):
    """Both directions of a layer (dirs: 1 or 2 tuples) in one nogil call
    (src_c/rnn.h fbp_rnn_forward_dirs).

    dirs[d] = (hs, pre, x, weight_ih, weight_hh, bias_ih, bias_hh), each as for
    rnn_forward (pre None only without lengths), direction 1 (the reverse
    direction) in the reversed slot layout on sched_r. work (never None,
    possibly empty: it selects the dtype): work_size(H, 1, False) of the larger
    schedule; pack as for rnn_forward.
    """
    _check_directions(dirs, 7, sched, sched_r)
    cdef int D = <int>len(dirs), T = sched.T, B = sched.B, d
    cdef int I = <int>dirs[0][2].shape[1], H = <int>dirs[0][4].shape[0]
    cdef floating *hs_p[2]
    cdef floating *pre_p[2]
    cdef const floating *x_p[2]
    cdef const floating *wi_p[2]
    cdef const floating *wh_p[2]
    cdef const floating *bi_p[2]
    cdef const floating *bh_p[2]
    cdef const fbp_seq *seq_p[2]
    cdef floating[:, ::1] a
    cdef const floating[:, ::1] ca
    cdef const floating[::1] cv
    cdef Schedule sc
    _check_rnn_pack(pack, H, floating is double)
    for d in range(D):
        hs, pre, x, weight_ih, weight_hh, bias_ih, bias_hh = dirs[d]
        sc = sched if d == 0 else sched_r
        _check_rnn_buffers(sc, hs, x, work, I, H, False)
        if pre is not None:
            _check_rows(pre, sc.slots, H, "pre")
        elif sc.has_lengths:
            raise ValueError("pre: needed with lengths")
        _check_matrix(weight_ih, H, I, "weight_ih")
        _check_matrix(weight_hh, H, H, "weight_hh")
        _check_vector(bias_ih, H, "bias_ih")
        _check_vector(bias_hh, H, "bias_hh")
        if T == 0 or B == 0 or H == 0:
            continue
        a = hs; hs_p[d] = &a[0, 0]
        if pre is not None:
            a = pre; pre_p[d] = &a[0, 0]
        else:
            pre_p[d] = NULL
        ca = x; x_p[d] = &ca[0, 0] if I else NULL
        ca = weight_ih; wi_p[d] = &ca[0, 0] if I else NULL
        ca = weight_hh; wh_p[d] = &ca[0, 0]
        cv = bias_ih; bi_p[d] = &cv[0]
        cv = bias_hh; bh_p[d] = &cv[0]
        seq_p[d] = _seq_ptr(sc)
    if T == 0 or B == 0 or H == 0:
        return
    cdef floating *work_p = &work[0] if work.shape[0] > 0 else NULL
    cdef floating *pack_p = &pack[0] if pack is not None else NULL
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_rnn_forward_dirs_f(D, hs_p, pre_p, work_p, x_p, wi_p, wh_p, bi_p, bh_p,
                                        pack_p, seq_p, T, B, I, H, act)
        else:
            st = fbp_rnn_forward_dirs_d(D, hs_p, pre_p, work_p, x_p, wi_p, wh_p, bi_p, bh_p,
                                        pack_p, seq_p, T, B, I, H, act)
    check_status(st)


def rnn_backward_dirs(floating[::1] work, tuple dirs, floating[::1] pack, Schedule sched,
                      int act, Schedule sched_r=None):
    """BPTT of both directions of a layer in one nogil call (fbp_rnn_backward_dirs).

    dirs[d] = (dh0, dweight_ih, dweight_hh, dbias, delta, dx, dy, dh_n, hs, x,
    weight_ih, weight_hh), each as for rnn_backward (dx, dy, dh_n may be None),
    direction 1 on sched_r. T must be at least 1 (with T = 0 the caller's
    ∂L/∂h_0 is dh_n). work: work_size(H, 1, True) of the larger schedule
    (never None, possibly empty).
    """
    _check_directions(dirs, 12, sched, sched_r)
    cdef int D = <int>len(dirs), T = sched.T, B = sched.B, d
    cdef int I = <int>dirs[0][9].shape[1], H = <int>dirs[0][11].shape[0]
    if T == 0:
        raise ValueError("rnn_backward_dirs: T must be at least 1")
    cdef floating *dx_p[2]
    cdef floating *dh0_p[2]
    cdef floating *dwi_p[2]
    cdef floating *dwh_p[2]
    cdef floating *db_p[2]
    cdef floating *delta_p[2]
    cdef const floating *dy_p[2]
    cdef const floating *dhn_p[2]
    cdef floating *hs_p[2]
    cdef const floating *x_p[2]
    cdef const floating *wi_p[2]
    cdef const floating *wh_p[2]
    cdef const fbp_seq *seq_p[2]
    cdef floating[:, ::1] a
    cdef floating[::1] v
    cdef const floating[:, ::1] ca
    cdef Schedule sc
    _check_rnn_pack(pack, H, floating is double)
    for d in range(D):
        (dh0, dweight_ih, dweight_hh, dbias, delta, dx, dy, dh_n, hs, x, weight_ih,
         weight_hh) = dirs[d]
        sc = sched if d == 0 else sched_r
        _check_rnn_buffers(sc, hs, x, work, I, H, True)
        _check_rows(delta, sc.slots, H, "delta")
        if dy is not None:
            _check_rows(dy, sc.slots, H, "dy")
        if dx is not None and I:
            _check_rows(dx, sc.slots, I, "dx")
        _check_matrix(dh0, B, H, "dh0")
        if dh_n is not None:
            _check_matrix(dh_n, B, H, "dh_n")
        _check_matrix(weight_ih, H, I, "weight_ih")
        _check_matrix(weight_hh, H, H, "weight_hh")
        _check_matrix(dweight_ih, H, I, "dweight_ih")
        _check_matrix(dweight_hh, H, H, "dweight_hh")
        _check_vector(dbias, H, "dbias")
        if B == 0 or H == 0:
            continue
        a = dh0; dh0_p[d] = &a[0, 0]
        if I:
            a = dweight_ih; dwi_p[d] = &a[0, 0]
        else:
            dwi_p[d] = NULL
        a = dweight_hh; dwh_p[d] = &a[0, 0]
        v = dbias; db_p[d] = &v[0]
        a = delta; delta_p[d] = &a[0, 0]
        if dx is not None and I:
            a = dx; dx_p[d] = &a[0, 0]
        else:
            dx_p[d] = NULL
        if dy is not None:
            ca = dy; dy_p[d] = &ca[0, 0]
        else:
            dy_p[d] = NULL
        if dh_n is not None:
            ca = dh_n; dhn_p[d] = &ca[0, 0]
        else:
            dhn_p[d] = NULL
        a = hs; hs_p[d] = &a[0, 0]
        ca = x; x_p[d] = &ca[0, 0] if I else NULL
        ca = weight_ih; wi_p[d] = &ca[0, 0] if I else NULL
        ca = weight_hh; wh_p[d] = &ca[0, 0]
        seq_p[d] = _seq_ptr(sc)
    if B == 0 or H == 0:
        return
    cdef floating *work_p = &work[0] if work.shape[0] > 0 else NULL
    cdef floating *pack_p = &pack[0] if pack is not None else NULL
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_rnn_backward_dirs_f(D, dx_p, dh0_p, dwi_p, dwh_p, db_p, delta_p, work_p,
                                         dy_p, dhn_p, hs_p, x_p, wi_p, wh_p, pack_p, seq_p,
                                         T, B, I, H, act)
        else:
            st = fbp_rnn_backward_dirs_d(D, dx_p, dh0_p, dwi_p, dwh_p, db_p, delta_p, work_p,
                                         dy_p, dhn_p, hs_p, x_p, wi_p, wh_p, pack_p, seq_p,
                                         T, B, I, H, act)
    check_status(st)
