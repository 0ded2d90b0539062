# LSTM forward and BPTT (src_c/lstm.c). Arrays arrive validated, C-contiguous
# and in one dtype from fastbp/lstm.py, as 2-D (rows, width) views in the slot
# layout of src_c/seq.h that a Schedule describes; every call runs a whole
# sequence with the GIL released. I may be 0.

cdef extern from "lstm.h":
    int fbp_lstm_forward_f(float *hs, float *cs, float *gates, float *work,
                           const float *x, const float *W_ih, const float *W_hh,
                           const float *bias, const float *peep, float *pack,
                           const fbp_seq *seq, int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_forward_d(double *hs, double *cs, double *gates, double *work,
                           const double *x, const double *W_ih, const double *W_hh,
                           const double *bias, const double *peep, double *pack,
                           const fbp_seq *seq, int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_backward_f(float *dG, float *dX, float *dW_ih, float *dW_hh, float *db,
                            float *dpeep, float *dh, float *dc, float *work,
                            const float *gates, const float *dy, float *hs, float *cs,
                            const float *x, const float *W_ih, const float *W_hh,
                            const float *peep, float *pack, const fbp_seq *seq,
                            int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_backward_d(double *dG, double *dX, double *dW_ih, double *dW_hh, double *db,
                            double *dpeep, double *dh, double *dc, double *work,
                            const double *gates, const double *dy, double *hs, double *cs,
                            const double *x, const double *W_ih, const double *W_hh,
                            const double *peep, double *pack, const fbp_seq *seq,
                            int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_forward_dirs_f(int D, float **hs, float **cs, float **gates, float *work,
                                const float **x, const float **W_ih, const float **W_hh,
                                const float **bias, const float **peep, float *pack,
                                const fbp_seq **seq, int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_forward_dirs_d(int D, double **hs, double **cs, double **gates, double *work,
                                const double **x, const double **W_ih, const double **W_hh,
                                const double **bias, const double **peep, double *pack,
                                const fbp_seq **seq, int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_backward_dirs_f(int D, float **dG, float **dX, float **dW_ih, float **dW_hh,
                                 float **db, float **dpeep, float **dh, float **dc, float *work,
                                 const float **gates, const float **dy, float **hs, float **cs,
                                 const float **x, const float **W_ih, const float **W_hh,
                                 const float **peep, float *pack, const fbp_seq **seq,
                                 int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_backward_dirs_d(int D, double **dG, double **dX, double **dW_ih, double **dW_hh,
                                 double **db, double **dpeep, double **dh, double **dc,
                                 double *work, const double **gates, const double **dy,
                                 double **hs, double **cs, const double **x, const double **W_ih,
                                 const double **W_hh, const double **peep, double *pack,
                                 const fbp_seq **seq, int T, int B, int I, int H) noexcept nogil
    int fbp_lstm_step_products_f(float *gates, float *dh, const float *hs, const float *W_hh,
                                 float *pack, int T, int B, int H) noexcept nogil
    int fbp_lstm_step_products_d(double *gates, double *dh, const double *hs, const double *W_hh,
                                 double *pack, int T, int B, int H) noexcept nogil
    Py_ssize_t fbp_lstm_pack_size_f(int H) noexcept nogil
    Py_ssize_t fbp_lstm_pack_size_d(int H) noexcept nogil


def lstm_pack_size(int H, bint double_precision):
    """Elements of the workspace that makes the kernels use their own packed
    recurrent product instead of BLAS (see src_c/lstm.h)."""
    return fbp_lstm_pack_size_d(H) if double_precision else fbp_lstm_pack_size_f(H)


cdef int _check_pack(pack, int H, bint double_precision) except -1:
    if pack is not None and pack.shape[0] < lstm_pack_size(H, double_precision):
        raise ValueError(f"pack: expected at least {lstm_pack_size(H, double_precision)} elements, "
                         f"got {pack.shape[0]}")
    return 0


cdef int _check_lstm_buffers(Schedule sched, hs, cs, gates, x, dy, work, int I, int H,
                             bint backward) except -1:
    """Every buffer at least as large as the schedule makes the kernel touch."""
    _check_rows(hs, sched.state_rows, H, "hs")
    _check_rows(cs, sched.state_rows, H, "cs")
    _check_rows(gates, sched.slots, 4 * H, "gates")
    _check_rows(x, sched.slots, I, "x")
    if dy is not None:
        _check_rows(dy, sched.slots, H, "dy")
    need = sched.work_size(H, 2, backward)
    if need and (work is None or work.shape[0] < need):
        raise ValueError(f"work: expected at least {need} elements")
    return 0


def lstm_forward(floating[:, ::1] hs, floating[:, ::1] cs, floating[:, ::1] gates,
                 floating[::1] work, const floating[:, ::1] x, const floating[:, ::1] weight_ih,
                 const floating[:, ::1] weight_hh, const floating[::1] bias,
                 const floating[:, ::1] peepholes, floating[::1] pack, Schedule sched):
    """Whole-sequence LSTM forward on seq.h's slot layout (plain (T·B, ·) rows
    without lengths).

    hs, cs (state_rows, H): block 0 = h0, c0 on entry, h_t / c_t after.
    gates (slots, 4H): the activated gates i, f, g, o on exit. x (slots, I),
    weight_ih (4H, I), weight_hh (4H, H), bias (4H) = b_ih + b_hh,
    peepholes (3, H) rows p_i, p_f, p_o or None. pack: workspace of
    lstm_pack_size(H) elements for the packed recurrent product, or None for
    BLAS. work: sched.work_size(H, 2, False) elements (None without resets).
    """
    cdef int T = sched.T, B = sched.B, I = <int>x.shape[1]
    cdef int H = <int>weight_hh.shape[1]
    cdef bint peep = peepholes is not None
    cdef bint has_work = work is not None and work.shape[0] > 0
    cdef const fbp_seq *seq = _seq_ptr(sched)
    cdef int st
    _check_pack(pack, H, floating is double)
    _check_lstm_buffers(sched, hs, cs, gates, x, None, work, I, H, False)
    _check_matrix(weight_ih, 4 * H, I, "weight_ih")
    _check_matrix(weight_hh, 4 * H, H, "weight_hh")
    _check_vector(bias, 4 * H, "bias")
    if peep:
        _check_matrix(peepholes, 3, H, "peepholes")
    if T == 0 or B == 0:
        return
    with nogil:
        if floating is float:
            st = fbp_lstm_forward_f(&hs[0, 0], &cs[0, 0], &gates[0, 0], &work[0] if has_work else NULL,
                                    &x[0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                    &weight_hh[0, 0], &bias[0], &peepholes[0, 0] if peep else NULL,
                                    &pack[0] if pack is not None else NULL, seq, T, B, I, H)
        else:
            st = fbp_lstm_forward_d(&hs[0, 0], &cs[0, 0], &gates[0, 0], &work[0] if has_work else NULL,
                                    &x[0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                    &weight_hh[0, 0], &bias[0], &peepholes[0, 0] if peep else NULL,
                                    &pack[0] if pack is not None else NULL, seq, T, B, I, H)
    check_status(st)


def lstm_backward(floating[:, ::1] dG, floating[:, ::1] dx, floating[:, ::1] dweight_ih,
                  floating[:, ::1] dweight_hh, floating[::1] dbias, floating[:, ::1] dpeepholes,
                  floating[:, ::1] dh, floating[:, ::1] dc, floating[::1] work,
                  const floating[:, ::1] gates, const floating[:, ::1] dy,
                  floating[:, ::1] hs, floating[:, ::1] cs,
                  const floating[:, ::1] x, const floating[:, ::1] weight_ih,
                  const floating[:, ::1] weight_hh, const floating[:, ::1] peepholes,
                  floating[::1] pack, Schedule sched):
    """Whole-sequence BPTT on the slot layout.

    dG (slots, 4H): δ_t on exit. gates (slots, 4H): the activated gates from
    lstm_forward; may be dG itself (the gates are then consumed).
    dx (slots, I) written (None: skipped). dweight_ih (4H, I), dweight_hh (4H, H),
    dbias (4H) and dpeepholes (3, H) (None without peepholes) are ACCUMULATED (+=).
    dh (B, H), dc (B, H): ∂L/∂h, ∂L/∂c at each row's last step on entry,
    ∂L/∂h_0, ∂L/∂c_0 on exit. dy (slots, H) or None (zeros); hs, cs (their
    reset rows are swapped during the call and restored), x, weights,
    peepholes, pack as in lstm_forward; work: sched.work_size(H, 2, True).
    """
    cdef int T = sched.T, B = sched.B, I = <int>x.shape[1]
    cdef int H = <int>weight_hh.shape[1]
    cdef bint peep = peepholes is not None
    cdef bint want_dx = dx is not None and I > 0
    cdef bint has_dy = dy is not None
    cdef bint has_work = work is not None and work.shape[0] > 0
    cdef const fbp_seq *seq = _seq_ptr(sched)
    cdef int st
    if peep and dpeepholes is None:
        raise ValueError("dpeepholes: needed when peepholes are given")
    _check_pack(pack, H, floating is double)
    _check_lstm_buffers(sched, hs, cs, gates, x, dy, work, I, H, True)
    _check_rows(dG, sched.slots, 4 * H, "dG")
    if want_dx:
        _check_rows(dx, sched.slots, I, "dx")
    _check_matrix(dh, B, H, "dh")
    _check_matrix(dc, B, H, "dc")
    _check_matrix(weight_ih, 4 * H, I, "weight_ih")
    _check_matrix(weight_hh, 4 * H, H, "weight_hh")
    _check_matrix(dweight_ih, 4 * H, I, "dweight_ih")
    _check_matrix(dweight_hh, 4 * H, H, "dweight_hh")
    _check_vector(dbias, 4 * H, "dbias")
    if peep:
        _check_matrix(peepholes, 3, H, "peepholes")
        _check_matrix(dpeepholes, 3, H, "dpeepholes")
    if T == 0 or B == 0:
        return
    with nogil:
        if floating is float:
            st = fbp_lstm_backward_f(&dG[0, 0], &dx[0, 0] if want_dx else NULL,
                                     &dweight_ih[0, 0] if I else NULL, &dweight_hh[0, 0], &dbias[0],
                                     &dpeepholes[0, 0] if peep else NULL, &dh[0, 0], &dc[0, 0],
                                     &work[0] if has_work else NULL,
                                     &gates[0, 0], &dy[0, 0] if has_dy else NULL, &hs[0, 0], &cs[0, 0],
                                     &x[0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                     &weight_hh[0, 0], &peepholes[0, 0] if peep else NULL,
                                     &pack[0] if pack is not None else NULL, seq, T, B, I, H)
        else:
            st = fbp_lstm_backward_d(&dG[0, 0], &dx[0, 0] if want_dx else NULL,
                                     &dweight_ih[0, 0] if I else NULL, &dweight_hh[0, 0], &dbias[0],
                                     &dpeepholes[0, 0] if peep else NULL, &dh[0, 0], &dc[0, 0],
                                     &work[0] if has_work else NULL,
                                     &gates[0, 0], &dy[0, 0] if has_dy else NULL, &hs[0, 0], &cs[0, 0],
                                     &x[0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                     &weight_hh[0, 0], &peepholes[0, 0] if peep else NULL,
                                     &pack[0] if pack is not None else NULL, seq, T, B, I, H)
    check_status(st)


def lstm_forward_dirs(floating[::1] work, tuple dirs, floating[::1] pack, Schedule sched,
                      Schedule sched_r=None):
    """Both directions of a layer (dirs: 1 or 2 tuples) in one nogil call
    (src_c/lstm.h fbp_lstm_forward_dirs).

    dirs[d] = (hs, cs, gates, x, weight_ih, weight_hh, bias, peepholes), each as
    for lstm_forward, direction 1 (the reverse direction) in the reversed slot
    layout on sched_r (the forward schedule's rows, mirrored resets). work
    (never None, possibly empty: it selects the dtype): the larger
    work_size(H, 2, False) of the two schedules; pack as for lstm_forward.
    """
    _check_directions(dirs, 8, sched, sched_r)
    cdef int D = <int>len(dirs), T = sched.T, B = sched.B, d
    cdef int I = <int>dirs[0][3].shape[1], H = <int>dirs[0][5].shape[1]
    cdef floating *hs_p[2]
    cdef floating *cs_p[2]
    cdef floating *g_p[2]
    cdef const floating *x_p[2]
    cdef const floating *wi_p[2]
    cdef const floating *wh_p[2]
    cdef const floating *b_p[2]
    cdef const floating *pp_p[2]
    cdef const fbp_seq *seq_p[2]
    cdef floating[:, ::1] a
    cdef const floating[:, ::1] ca
    cdef const floating[::1] cv
    cdef Schedule sc
    _check_pack(pack, H, floating is double)
    for d in range(D):
        hs, cs, gates, x, weight_ih, weight_hh, bias, peep = dirs[d]
        sc = sched if d == 0 else sched_r
        _check_lstm_buffers(sc, hs, cs, gates, x, None, work, I, H, False)
        _check_matrix(weight_ih, 4 * H, I, "weight_ih")
        _check_matrix(weight_hh, 4 * H, H, "weight_hh")
        _check_vector(bias, 4 * H, "bias")
        if peep is not None:
            _check_matrix(peep, 3, H, "peepholes")
        if d == 1 and (peep is None) != (dirs[0][7] is None):
            raise ValueError("peepholes: both directions or neither")
        if T == 0 or B == 0:
            continue
        a = hs; hs_p[d] = &a[0, 0]
        a = cs; cs_p[d] = &a[0, 0]
        a = gates; g_p[d] = &a[0, 0]
        ca = x; x_p[d] = &ca[0, 0] if I else NULL
        ca = weight_ih; wi_p[d] = &ca[0, 0] if I else NULL
        ca = weight_hh; wh_p[d] = &ca[0, 0]
        cv = bias; b_p[d] = &cv[0]
        if peep is not None:
            ca = peep; pp_p[d] = &ca[0, 0]
        else:
            pp_p[d] = NULL
        seq_p[d] = _seq_ptr(sc)
    if T == 0 or B == 0:
        return
    cdef floating *work_p = &work[0] if work.shape[0] > 0 else NULL
    cdef floating *pack_p = &pack[0] if pack is not None else NULL
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_lstm_forward_dirs_f(D, hs_p, cs_p, g_p, work_p, x_p, wi_p, wh_p, b_p, pp_p,
                                         pack_p, seq_p, T, B, I, H)
        else:
            st = fbp_lstm_forward_dirs_d(D, hs_p, cs_p, g_p, work_p, x_p, wi_p, wh_p, b_p, pp_p,
                                         pack_p, seq_p, T, B, I, H)
    check_status(st)


def lstm_backward_dirs(floating[::1] work, tuple dirs, floating[::1] pack, Schedule sched,
                       Schedule sched_r=None):
    """BPTT of both directions of a layer in one nogil call
    (fbp_lstm_backward_dirs).

    dirs[d] = (dG, dx, dweight_ih, dweight_hh, dbias, dpeepholes, dh, dc, gates,
    dy, hs, cs, x, weight_ih, weight_hh, peepholes), each as for
    lstm_backward (dx, dy, dpeepholes/peepholes may be None), direction 1 on
    sched_r. work: the larger work_size(H, 2, True) of the two schedules
    (never None, possibly empty).
    """
    _check_directions(dirs, 16, sched, sched_r)
    cdef int D = <int>len(dirs), T = sched.T, B = sched.B, d
    cdef int I = <int>dirs[0][12].shape[1], H = <int>dirs[0][14].shape[1]
    cdef floating *dg_p[2]
    cdef floating *dx_p[2]
    cdef floating *dwi_p[2]
    cdef floating *dwh_p[2]
    cdef floating *db_p[2]
    cdef floating *dpp_p[2]
    cdef floating *dh_p[2]
    cdef floating *dc_p[2]
    cdef const floating *g_p[2]
    cdef const floating *dy_p[2]
    cdef floating *hs_p[2]
    cdef floating *cs_p[2]
    cdef const floating *x_p[2]
    cdef const floating *wi_p[2]
    cdef const floating *wh_p[2]
    cdef const floating *pp_p[2]
    cdef const fbp_seq *seq_p[2]
    cdef floating[:, ::1] a
    cdef floating[::1] v
    cdef const floating[:, ::1] ca
    cdef Schedule sc
    _check_pack(pack, H, floating is double)
    for d in range(D):
        (dG, dx, dweight_ih, dweight_hh, dbias, dpeep, dh, dc, gates, dy, hs, cs, x, weight_ih,
         weight_hh, peep) = dirs[d]
        sc = sched if d == 0 else sched_r
        _check_lstm_buffers(sc, hs, cs, gates, x, dy, work, I, H, True)
        _check_rows(dG, sc.slots, 4 * H, "dG")
        if dx is not None and I:
            _check_rows(dx, sc.slots, I, "dx")
        _check_matrix(weight_ih, 4 * H, I, "weight_ih")
        _check_matrix(weight_hh, 4 * H, H, "weight_hh")
        _check_matrix(dweight_ih, 4 * H, I, "dweight_ih")
        _check_matrix(dweight_hh, 4 * H, H, "dweight_hh")
        _check_vector(dbias, 4 * H, "dbias")
        _check_matrix(dh, B, H, "dh")
        _check_matrix(dc, B, H, "dc")
        if peep is not None:
            _check_matrix(peep, 3, H, "peepholes")
            _check_matrix(dpeep, 3, H, "dpeepholes")
        if T == 0 or B == 0:
            continue
        a = dG; dg_p[d] = &a[0, 0]
        if dx is not None and I:
            a = dx; dx_p[d] = &a[0, 0]
        else:
            dx_p[d] = NULL
        if I:
            a = dweight_ih; dwi_p[d] = &a[0, 0]
        else:
            dwi_p[d] = NULL
        a = dweight_hh; dwh_p[d] = &a[0, 0]
        v = dbias; db_p[d] = &v[0]
        a = dh; dh_p[d] = &a[0, 0]
        a = dc; dc_p[d] = &a[0, 0]
        ca = gates; g_p[d] = &ca[0, 0]
        if dy is not None:
            ca = dy; dy_p[d] = &ca[0, 0]
        else:
            dy_p[d] = NULL
        a = hs; hs_p[d] = &a[0, 0]
        a = cs; cs_p[d] = &a[0, 0]
        ca = x; x_p[d] = &ca[0, 0] if I else NULL
        ca = weight_ih; wi_p[d] = &ca[0, 0] if I else NULL
        ca = weight_hh; wh_p[d] = &ca[0, 0]
        if peep is not None:
            ca = peep; pp_p[d] = &ca[0, 0]
            a = dpeep; dpp_p[d] = &a[0, 0]
        else:
            pp_p[d] = NULL
            dpp_p[d] = NULL
        seq_p[d] = _seq_ptr(sc)
    if T == 0 or B == 0:
        return
    cdef floating *work_p = &work[0] if work.shape[0] > 0 else NULL
    cdef floating *pack_p = &pack[0] if pack is not None else NULL
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_lstm_backward_dirs_f(D, dg_p, dx_p, dwi_p, dwh_p, db_p, dpp_p, dh_p, dc_p,
                                          work_p, g_p, dy_p, hs_p, cs_p, x_p, wi_p, wh_p, pp_p,
                                          pack_p, seq_p, T, B, I, H)
        else:
            st = fbp_lstm_backward_dirs_d(D, dg_p, dx_p, dwi_p, dwh_p, db_p, dpp_p, dh_p, dc_p,
                                          work_p, g_p, dy_p, hs_p, cs_p, x_p, wi_p, wh_p, pp_p,
                                          pack_p, seq_p, T, B, I, H)
    check_status(st)


def lstm_step_products(floating[:, :, ::1] gates, floating[:, ::1] dh, const floating[:, :, ::1] hs,
                       const floating[:, ::1] weight_hh, floating[::1] pack):
    """Benchmark hook: the T forward and T backward recurrent products alone,
    as lstm_forward/lstm_backward run them (pack or None as there).
    gates(T,B,4H) accumulated, dh(B,H) overwritten, hs(T+1,B,H)."""
    cdef int T = <int>gates.shape[0], B = <int>gates.shape[1], H = <int>weight_hh.shape[1]
    cdef int st
    if (hs.shape[0] != T + 1 or hs.shape[1] != B or hs.shape[2] != H or gates.shape[2] != 4 * H
            or dh.shape[0] != B or dh.shape[1] != H or weight_hh.shape[0] != 4 * H):
        raise ValueError("lstm_step_products: inconsistent shapes")
    _check_pack(pack, H, floating is double)
    if T == 0 or B == 0:
        return
    with nogil:
        if floating is float:
            st = fbp_lstm_step_products_f(&gates[0, 0, 0], &dh[0, 0], &hs[0, 0, 0], &weight_hh[0, 0],
                                          &pack[0] if pack is not None else NULL, T, B, H)
        else:
            st = fbp_lstm_step_products_d(&gates[0, 0, 0], &dh[0, 0], &hs[0, 0, 0], &weight_hh[0, 0],
                                          &pack[0] if pack is not None else NULL, T, B, H)
    check_status(st)
