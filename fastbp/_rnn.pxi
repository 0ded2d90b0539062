# Elman RNN forward and BPTT (src_c/rnn.c). Arrays arrive validated, C-contiguous
# and in one dtype from fastbp/rnn.py; every call runs a whole sequence with the
# GIL released.

cdef extern from "rnn.h":
    int fbp_rnn_forward_f(float *hs, const float *x, const float *W_ih, const float *W_hh,
                          const float *b_ih, const float *b_hh, float *pack,
                          int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_forward_d(double *hs, const double *x, const double *W_ih, const double *W_hh,
                          const double *b_ih, const double *b_hh, double *pack,
                          int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_backward_f(float *dx, float *dh0, float *dW_ih, float *dW_hh, float *db, float *delta,
                           const float *dy, const float *dh_n, const float *hs, const float *x,
                           const float *W_ih, const float *W_hh, float *pack,
                           int T, int B, int I, int H, int act) noexcept nogil
    int fbp_rnn_backward_d(double *dx, double *dh0, double *dW_ih, double *dW_hh, double *db, double *delta,
                           const double *dy, const double *dh_n, const double *hs, const double *x,
                           const double *W_ih, const double *W_hh, double *pack,
                           int T, int B, int I, int H, int act) noexcept nogil
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


def rnn_forward(floating[:, :, ::1] hs, const floating[:, :, ::1] x,
                const floating[:, ::1] weight_ih, const floating[:, ::1] weight_hh,
                const floating[::1] bias_ih, const floating[::1] bias_hh, floating[::1] pack, int act):
    """hs(T+1,B,H): hs[0] = h0 on entry; hs[1..T] = h_1..h_T on exit.

    x(T,B,I), weight_ih(H,I), weight_hh(H,H), bias_ih(H), bias_hh(H); shapes
    are checked by the caller (fastbp.rnn). pack: workspace of rnn_pack_size(H)
    elements for the packed recurrent product, or None for BLAS. Needs T, B,
    H >= 1; I may be 0.
    """
    cdef int T = <int>x.shape[0], B = <int>x.shape[1], I = <int>x.shape[2]
    cdef int H = <int>weight_hh.shape[0]
    cdef bint has_pack = pack is not None
    _check_rnn_pack(pack, H, floating is double)
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_rnn_forward_f(&hs[0, 0, 0], &x[0, 0, 0] if I else NULL,
                                   &weight_ih[0, 0] if I else NULL, &weight_hh[0, 0],
                                   &bias_ih[0], &bias_hh[0], &pack[0] if has_pack else NULL,
                                   T, B, I, H, act)
        else:
            st = fbp_rnn_forward_d(&hs[0, 0, 0], &x[0, 0, 0] if I else NULL,
                                   &weight_ih[0, 0] if I else NULL, &weight_hh[0, 0],
                                   &bias_ih[0], &bias_hh[0], &pack[0] if has_pack else NULL,
                                   T, B, I, H, act)
    check_status(st)


def rnn_backward(floating[:, ::1] dh0, floating[:, ::1] dweight_ih, floating[:, ::1] dweight_hh,
                 floating[::1] dbias, floating[:, :, ::1] delta, floating[:, :, ::1] dx,
                 const floating[:, :, ::1] dy, const floating[:, ::1] dh_n,
                 const floating[:, :, ::1] hs, const floating[:, :, ::1] x,
                 const floating[:, ::1] weight_ih, const floating[:, ::1] weight_hh,
                 floating[::1] pack, int act):
    """BPTT: dh0(B,H) and dx(T,B,I) (None: not computed) are written; dweight_ih(H,I),
    dweight_hh(H,H), dbias(H) are ACCUMULATED (+=); delta(T,B,H) is workspace and
    holds δ_t on exit. dy(T,B,H) and dh_n(B,H) may be None (zeros); pack as for
    rnn_forward. (The first argument is never None: Cython picks the float or
    double version from it.)

    hs(T+1,B,H), x, weights as given to / produced by rnn_forward. Needs T, B, H >= 1.
    """
    cdef int T = <int>x.shape[0], B = <int>x.shape[1], I = <int>x.shape[2]
    cdef int H = <int>weight_hh.shape[0]
    cdef bint want_dx = dx is not None and I > 0
    cdef bint has_dy = dy is not None
    cdef bint has_dh_n = dh_n is not None
    cdef bint has_pack = pack is not None
    _check_rnn_pack(pack, H, floating is double)
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_rnn_backward_f(&dx[0, 0, 0] if want_dx else NULL, &dh0[0, 0],
                                    &dweight_ih[0, 0] if I else NULL, &dweight_hh[0, 0], &dbias[0],
                                    &delta[0, 0, 0], &dy[0, 0, 0] if has_dy else NULL,
                                    &dh_n[0, 0] if has_dh_n else NULL, &hs[0, 0, 0],
                                    &x[0, 0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                    &weight_hh[0, 0], &pack[0] if has_pack else NULL,
                                    T, B, I, H, act)
        else:
            st = fbp_rnn_backward_d(&dx[0, 0, 0] if want_dx else NULL, &dh0[0, 0],
                                    &dweight_ih[0, 0] if I else NULL, &dweight_hh[0, 0], &dbias[0],
                                    &delta[0, 0, 0], &dy[0, 0, 0] if has_dy else NULL,
                                    &dh_n[0, 0] if has_dh_n else NULL, &hs[0, 0, 0],
                                    &x[0, 0, 0] if I else NULL, &weight_ih[0, 0] if I else NULL,
                                    &weight_hh[0, 0], &pack[0] if has_pack else NULL,
                                    T, B, I, H, act)
    check_status(st)
