# Activations and losses (src_c/elementwise.c). Arrays arrive validated and
# C-contiguous from fastbp/functional.py; 2-D views (rows, cols).

cdef extern from "fastbp.h":
    enum:
        FBP_IDENTITY
        FBP_SIGMOID
        FBP_TANH
        FBP_RELU
        FBP_SOFTMAX
    int fbp_activation_forward_f(float *a, const float *z, Py_ssize_t rows, Py_ssize_t cols, int act) noexcept nogil
    int fbp_activation_forward_d(double *a, const double *z, Py_ssize_t rows, Py_ssize_t cols, int act) noexcept nogil
    int fbp_activation_backward_f(float *dz, const float *a, const float *da, Py_ssize_t rows, Py_ssize_t cols, int act) noexcept nogil
    int fbp_activation_backward_d(double *dz, const double *a, const double *da, Py_ssize_t rows, Py_ssize_t cols, int act) noexcept nogil
    int fbp_softmax_xent_labels_f(double *loss, float *dlogits, const float *logits, const int64_t *labels,
                                  Py_ssize_t rows, Py_ssize_t cols, double scale) noexcept nogil
    int fbp_softmax_xent_labels_d(double *loss, double *dlogits, const double *logits, const int64_t *labels,
                                  Py_ssize_t rows, Py_ssize_t cols, double scale) noexcept nogil
    int fbp_softmax_xent_probs_f(double *loss, float *dlogits, const float *logits, const float *target,
                                 Py_ssize_t rows, Py_ssize_t cols, double scale) noexcept nogil
    int fbp_softmax_xent_probs_d(double *loss, double *dlogits, const double *logits, const double *target,
                                 Py_ssize_t rows, Py_ssize_t cols, double scale) noexcept nogil
    int fbp_squared_error_f(double *loss, float *dpred, const float *pred, const float *target,
                            Py_ssize_t rows, Py_ssize_t cols, double scale) noexcept nogil
    int fbp_squared_error_d(double *loss, double *dpred, const double *pred, const double *target,
                            Py_ssize_t rows, Py_ssize_t cols, double scale) noexcept nogil

ACTIVATION_CODES = {"identity": FBP_IDENTITY, "sigmoid": FBP_SIGMOID, "tanh": FBP_TANH,
                    "relu": FBP_RELU, "softmax": FBP_SOFTMAX}


def activation_forward(floating[:, ::1] a, const floating[:, ::1] z, int act):
    """a(rows, cols) = f(z) for the activation code `act`."""
    cdef Py_ssize_t rows = z.shape[0], cols = z.shape[1]
    cdef int st = FBP_OK
    _check_matrix(a, rows, cols, "a")
    if rows == 0 or cols == 0:
        return
    with nogil:
        if floating is float:
            st = fbp_activation_forward_f(&a[0, 0], &z[0, 0], rows, cols, act)
        else:
            st = fbp_activation_forward_d(&a[0, 0], &z[0, 0], rows, cols, act)
    check_status(st)


def activation_backward(floating[:, ::1] dz, const floating[:, ::1] a, const floating[:, ::1] da, int act):
    """dz(rows, cols) = da ⊙ f'(·) from the forward output a (softmax: JVP)."""
    cdef Py_ssize_t rows = a.shape[0], cols = a.shape[1]
    cdef int st = FBP_OK
    _check_matrix(dz, rows, cols, "dz")
    _check_matrix(da, rows, cols, "da")
    if rows == 0 or cols == 0:
        return
    with nogil:
        if floating is float:
            st = fbp_activation_backward_f(&dz[0, 0], &a[0, 0], &da[0, 0], rows, cols, act)
        else:
            st = fbp_activation_backward_d(&dz[0, 0], &a[0, 0], &da[0, 0], rows, cols, act)
    check_status(st)


def softmax_xent_labels(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                        const int64_t[::1] labels, double scale):
    """Return scale·Σ −ln softmax(logits)[label]; dlogits = scale (ŷ − onehot)."""
    cdef Py_ssize_t rows = logits.shape[0], cols = logits.shape[1]
    cdef double loss = 0.0
    cdef int st = FBP_OK
    _check_matrix(dlogits, rows, cols, "dlogits")
    _check_vector(labels, rows, "labels")
    if rows == 0:
        return 0.0
    with nogil:
        if floating is float:
            st = fbp_softmax_xent_labels_f(&loss, &dlogits[0, 0], &logits[0, 0], &labels[0], rows, cols, scale)
        else:
            st = fbp_softmax_xent_labels_d(&loss, &dlogits[0, 0], &logits[0, 0], &labels[0], rows, cols, scale)
    check_status(st)
    return loss


def softmax_xent_probs(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                       const floating[:, ::1] target, double scale):
    """Return scale·Σ −z ln softmax(logits); dlogits = scale (ŷ Σz − z)."""
    cdef Py_ssize_t rows = logits.shape[0], cols = logits.shape[1]
    cdef double loss = 0.0
    cdef int st = FBP_OK
    _check_matrix(dlogits, rows, cols, "dlogits")
    _check_matrix(target, rows, cols, "target")
    if rows == 0:
        return 0.0
    with nogil:
        if floating is float:
            st = fbp_softmax_xent_probs_f(&loss, &dlogits[0, 0], &logits[0, 0], &target[0, 0], rows, cols, scale)
        else:
            st = fbp_softmax_xent_probs_d(&loss, &dlogits[0, 0], &logits[0, 0], &target[0, 0], rows, cols, scale)
    check_status(st)
    return loss


def squared_error(floating[:, ::1] dpred, const floating[:, ::1] pred,
                  const floating[:, ::1] target, double scale):
    """Return scale·Σ (y − ŷ)²; dpred = 2·scale·(ŷ − y)."""
    cdef Py_ssize_t rows = pred.shape[0], cols = pred.shape[1]
    cdef double loss = 0.0
    cdef int st = FBP_OK
    _check_matrix(dpred, rows, cols, "dpred")
    _check_matrix(target, rows, cols, "target")
    if rows == 0 or cols == 0:
        return 0.0
    with nogil:
        if floating is float:
            st = fbp_squared_error_f(&loss, &dpred[0, 0], &pred[0, 0], &target[0, 0], rows, cols, scale)
        else:
            st = fbp_squared_error_d(&loss, &dpred[0, 0], &pred[0, 0], &target[0, 0], rows, cols, scale)
    check_status(st)
    return loss
