# The MLP (src_c/mlp.c): one compiled call per training step.
#
# MLPCore holds what stays fixed for a model: the layer sizes, activation codes,
# the parameter arrays themselves and C arrays of pointers into them. It makes
# those arrays (copies of the initial values it is given) over bytearrays it
# pins with memoryviews of its own: NumPy can move an array's data in place
# (``W.__setstate__``, ``W.resize(refcheck=False)``) and free the old buffer,
# but an array that views pinned memory cannot be resized, and replacing its
# buffer frees nothing, so the pointers never go stale (fastbp.mlp.MLP hands
# out these arrays and copies new values into them). Every call checks that
# each array still views its storage. Per batch size it caches an _MLPWorkspace: the
# activation buffers and their pointer array, built once and reused, so a call
# costs one buffer lookup per argument and no allocation but the returned arrays.
#
# Arrays reach these methods already validated and converted by fastbp/mlp.py;
# the checks here are the last line of defence that keeps a bad pointer out of C.

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE)
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)
from cpython.ref cimport PyObject
import numpy as _np

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject *o)
    PyObject *PyTuple_GET_ITEM(PyObject *p, Py_ssize_t pos)

cdef extern from "mlp.h":
    enum:
        FBP_MLP_XENT_LABELS
        FBP_MLP_XENT_PROBS
        FBP_MLP_SQUARED
    int fbp_mlp_forward_f(float **A, float *work, const float *X, const float **W, const float **b,
                          const int *sizes, const int *acts, int n_layers, int batch) noexcept nogil
    int fbp_mlp_forward_d(double **A, double *work, const double *X, const double **W, const double **b,
                          const int *sizes, const int *acts, int n_layers, int batch) noexcept nogil
    int fbp_mlp_loss_grad_f(double *loss, float **dW, float **db, float **A, float *work,
                            const float *X, const int64_t *labels, const float *target,
                            const float **W, const float **b,
                            const int *sizes, const int *acts, int n_layers, int batch,
                            int loss_code, double scale, double l2) noexcept nogil
    int fbp_mlp_loss_grad_d(double *loss, double **dW, double **db, double **A, double *work,
                            const double *X, const int64_t *labels, const double *target,
                            const double **W, const double **b,
                            const int *sizes, const int *acts, int n_layers, int batch,
                            int loss_code, double scale, double l2) noexcept nogil

MLP_LOSS_CODES = {"xent_labels": FBP_MLP_XENT_LABELS, "xent_probs": FBP_MLP_XENT_PROBS,
                  "squared": FBP_MLP_SQUARED}

cdef enum:
    # forward() runs large batches in blocks of this many rows, so its cached
    # workspace stays small whatever the batch.
    _FORWARD_BLOCK = 1024
    # Workspaces kept per model (one per recent batch size; oldest dropped first).
    _MAX_WORKSPACES = 4
    # Layers a network may have (the per-call gradient pointer arrays live on the stack).
    _MLP_MAX_LAYERS = 64
    # Gradient sets of at most this many bytes are recycled (see MLPCore._grad_arrays).
    _RECYCLE_MAX_BYTES = 64 << 20

MLP_MAX_LAYERS = _MLP_MAX_LAYERS


cdef void *_data_ptr(object arr, Py_ssize_t ndim, Py_ssize_t rows, Py_ssize_t cols,
                     char fmt, bint writable, str name) except NULL:
    """Data pointer of a C-contiguous array of format `fmt` ('f', 'd' or 'q' for
    int64) and shape (rows[, cols]); ValueError naming `name` otherwise. The
    pointer stays valid while `arr` lives (NumPy never moves its data)."""
    cdef Py_buffer view
    cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0)
    cdef void *ptr
    cdef bint ok
    try:
        PyObject_GetBuffer(arr, &view, flags)
    except (BufferError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a C-contiguous{' writable' if writable else ''} array, "
                         f"got {type(arr).__name__} ({e})") from None
    try:
        ok = view.ndim == ndim and view.shape[0] == rows and (ndim == 1 or view.shape[1] == cols)
        if ok:
            if fmt == b'q':   # int64 is 'l' or 'q' depending on the platform
                ok = view.itemsize == 8 and view.format[1] == 0 and view.format[0] in (b'l', b'q')
            else:
                ok = view.format[0] == fmt and view.format[1] == 0
        if not ok:
            want = f"({rows},)" if ndim == 1 else f"({rows}, {cols})"
            raise ValueError(f"{name}: expected a C-contiguous array of shape {want} and "
                             f"dtype {_FMT_NAMES[fmt]}, got shape {getattr(arr, 'shape', '?')} "
                             f"dtype {getattr(arr, 'dtype', '?')}")
        ptr = view.buf
    finally:
        PyBuffer_Release(&view)
    if ptr == NULL:   # only for empty arrays, which callers never pass
        raise ValueError(f"{name}: empty array")
    return ptr

_FMT_NAMES = {ord('f'): "float32", ord('d'): "float64", ord('q'): "int64"}   # by format char code


cdef class _MLPWorkspace:
    """Buffers for one batch size: A[l] (B, n_{l+1}) per layer and the
    (B, max n_l) scratch the kernels need, with their pointer array."""
    cdef int batch
    cdef void **A_ptrs        # n_layers entries into the arrays below
    cdef void **fwd_ptrs      # the same, last entry pointed at the caller's output
    cdef void *work
    cdef list arrays          # keeps the buffers alive

    def __cinit__(self, int batch, sizes, dtype):
        cdef int L = len(sizes) - 1, l
        cdef char fmt = b'd' if dtype == _np.float64 else b'f'
        self.batch = batch
        self.A_ptrs = <void **>PyMem_Calloc(L, sizeof(void *))
        self.fwd_ptrs = <void **>PyMem_Calloc(L, sizeof(void *))
        if self.A_ptrs == NULL or self.fwd_ptrs == NULL:
            raise MemoryError()
        self.arrays = [_np.empty((batch, sizes[l + 1]), dtype) for l in range(L)]
        for l in range(L):
            self.A_ptrs[l] = _data_ptr(self.arrays[l], 2, batch, sizes[l + 1], fmt, True, "workspace")
            self.fwd_ptrs[l] = self.A_ptrs[l]
        widest = max(sizes[1:])   # Zᵀ of any layer forward, ∂L/∂A of a hidden layer backward
        self.arrays.append(_np.empty((batch, widest), dtype))
        self.work = _data_ptr(self.arrays[L], 2, batch, widest, fmt, True, "workspace")

    def __dealloc__(self):
        PyMem_Free(self.A_ptrs)
        PyMem_Free(self.fwd_ptrs)


cdef class MLPCore:
    """The compiled half of fastbp.mlp.MLP (see the module comment above).

    sizes: layer widths n_0 .. n_L; acts: L activation codes; params: list of
    (W (n_{l+1}, n_l), b (n_{l+1},)) arrays of `dtype`: their values are copied
    into the core's own arrays, ``core.params``, which the model hands out.
    """
    cdef readonly int n_layers
    cdef readonly object dtype
    cdef bint is_double
    cdef char fmt
    cdef int *sizes
    cdef int *acts
    cdef void **W_ptrs
    cdef void **b_ptrs
    cdef readonly tuple shapes   # ((n_{l+1}, n_l), (n_{l+1},)) per layer, for the grads
    cdef tuple out_names         # ("out[l][0]", "out[l][1]") per layer, for error messages
    cdef readonly tuple params   # ((W, b) per layer): the model's arrays, views of pinned storage
    cdef tuple flat              # the arrays of params, W and b of each layer in turn
    cdef tuple bases             # each array's base when made: another one means a new buffer
    cdef tuple pins              # a memoryview of each array's bytearray: never freed nor resized
    cdef dict workspaces
    cdef list spares             # up to 2 tuples of gradient arrays handed out before
    cdef bint recycle
    cdef PyThread_type_lock lock

    def __cinit__(self, sizes, acts, params, dtype):
        cdef int L = len(sizes) - 1, l
        if L < 1 or L > _MLP_MAX_LAYERS or len(acts) != L or len(params) != L:
            raise ValueError(f"MLPCore: need 1 to {_MLP_MAX_LAYERS} layers, n_layers + 1 sizes, "
                             "n_layers activations and parameter pairs")
        self.n_layers = L
        self.dtype = _np.dtype(dtype)
        self.is_double = self.dtype == _np.float64
        self.fmt = b'd' if self.is_double else b'f'
        self.lock = PyThread_allocate_lock()
        self.sizes = <int *>PyMem_Calloc(L + 1, sizeof(int))
        self.acts = <int *>PyMem_Calloc(L, sizeof(int))
        self.W_ptrs = <void **>PyMem_Calloc(L, sizeof(void *))
        self.b_ptrs = <void **>PyMem_Calloc(L, sizeof(void *))
        if (self.lock == NULL or self.sizes == NULL or self.acts == NULL or self.W_ptrs == NULL
                or self.b_ptrs == NULL):
            raise MemoryError()
        for l in range(L + 1):
            self.sizes[l] = sizes[l]
        for l in range(L):
            self.acts[l] = acts[l]
        owned, pins = [], []
        for pair in params:
            made = []
            for a in pair:
                a = _np.asarray(a, dtype=self.dtype)
                store = bytearray(max(a.nbytes, 1))
                pins.append(memoryview(store))
                arr = _np.frombuffer(store, self.dtype, count=a.size).reshape(a.shape)
                arr[...] = a
                made.append(arr)
            owned.append(tuple(made))
        self.params = tuple(owned)
        self.pins = tuple(pins)
        self.flat = tuple(a for pair in self.params for a in pair)
        self.bases = tuple(a.base for a in self.flat)
        for l in range(L):
            W, b = self.params[l]
            self.W_ptrs[l] = _data_ptr(W, 2, sizes[l + 1], sizes[l], self.fmt, False, f"params[{l}][0]")
            self.b_ptrs[l] = _data_ptr(b, 1, sizes[l + 1], 0, self.fmt, False, f"params[{l}][1]")
        self.shapes = tuple(((sizes[l + 1], sizes[l]), (sizes[l + 1],)) for l in range(L))
        self.out_names = tuple((f"out[{l}][0]", f"out[{l}][1]") for l in range(L))
        self.workspaces = {}
        self.spares = []
        self.recycle = sum(a.nbytes for pair in self.params for a in pair) <= _RECYCLE_MAX_BYTES

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        PyMem_Free(self.sizes)
        PyMem_Free(self.acts)
        PyMem_Free(self.W_ptrs)
        PyMem_Free(self.b_ptrs)

    cdef int _check_params(self) except -1:
        """ValueError naming a parameter array whose buffer was replaced in place
        (``W.__setstate__``): it no longer views the storage the kernels read,
        so updates to it would silently not reach the model."""
        cdef Py_ssize_t i
        cdef tuple flat = self.flat, bases = self.bases
        for i in range(2 * self.n_layers):
            if flat[i].base is not bases[i]:
                raise ValueError(f"params[{i // 2}][{i % 2}]: its buffer was replaced in place "
                                 "(not by fastbp): it is no longer the model's parameter; assign "
                                 "values with net.params = ... or write into the arrays")
        return 0

    cdef _MLPWorkspace _workspace(self, int batch):
        ws = self.workspaces.get(batch)
        if ws is None:
            if len(self.workspaces) >= _MAX_WORKSPACES:
                del self.workspaces[next(iter(self.workspaces))]
            ws = _MLPWorkspace(batch, [self.sizes[l] for l in range(self.n_layers + 1)], self.dtype)
            self.workspaces[batch] = ws
        return ws

    cdef list _new_grads(self):
        """[(dW, db), ...] for a call without out=.

        Semantically new arrays. To keep allocation (and the page faults of
        fresh ~MB blocks) out of a training loop, the last two sets handed out
        are kept, and a set is reused when nothing but this cache refers to
        any of its arrays any more: no list, tuple or view of the caller can
        see it change. `loss, grads = net.loss_and_grad(X, y)` in a loop
        alternates between the two sets. A set is taken out of the cache while
        it is being handed out, so two threads never take the same one. Nets
        over 64 MB of parameters skip this (holding twice their size back would
        cost more than it saves)."""
        cdef Py_ssize_t k, i, n = 2 * self.n_layers
        cdef int L = self.n_layers
        cdef PyObject *cand
        cdef bint free
        for k in range(len(self.spares)):
            cand = <PyObject *>self.spares[k]
            free = True
            for i in range(n):   # refcount 1: only the cached tuple holds the array
                if Py_REFCNT(PyTuple_GET_ITEM(cand, i)) != 1:
                    free = False
                    break
            if free:
                arrays = self.spares.pop(k)
                grads = [(arrays[2 * i], arrays[2 * i + 1]) for i in range(L)]
                self.spares.append(arrays)
                return grads
        arrays = tuple(_np.empty(shape, self.dtype) for pair in self.shapes for shape in pair)
        grads = [(arrays[2 * i], arrays[2 * i + 1]) for i in range(L)]
        if self.recycle:
            self.spares.append(arrays)
            while len(self.spares) > 2:
                del self.spares[0]
        return grads

    def clear_workspaces(self):
        """Drop every cached workspace and spare gradient set (rebuilt on demand)."""
        self.workspaces.clear()
        self.spares.clear()

    def loss_and_grad(self, X, y, int loss_code, double scale, double l2, out=None):
        """One training step: returns (loss, [(dW, db), ...]).

        X: (B, n_0) C-contiguous, model dtype. y: int64 labels (B,) for
        FBP_MLP_XENT_LABELS, else a (B, n_L) C-contiguous model-dtype target.
        out: None (fresh gradient arrays) or a list of (dW, db) to overwrite.
        """
        cdef int L = self.n_layers, l, batch
        cdef int n_in = self.sizes[0], n_out = self.sizes[L]
        cdef const void *x_ptr
        cdef const int64_t *labels = NULL
        cdef const void *target = NULL
        cdef double loss = 0.0
        cdef int x_ok = 1, y_ok = 1, labels_ok = 1, st = FBP_OK
        cdef Py_ssize_t i
        cdef _MLPWorkspace ws
        cdef void *dW_ptrs[_MLP_MAX_LAYERS]
        cdef void *db_ptrs[_MLP_MAX_LAYERS]

        batch = len(X)
        if batch < 1:
            raise ValueError("X: the batch is empty")
        self._check_params()
        x_ptr = _data_ptr(X, 2, batch, n_in, self.fmt, False, "X")
        if loss_code == FBP_MLP_XENT_LABELS:
            # checked and then used without the GIL: our own copy, which no
            # other thread can rewrite in between (labels index memory)
            y = _np.array(y, copy=True) if isinstance(y, _np.ndarray) else y
            labels = <const int64_t *>_data_ptr(y, 1, batch, 0, b'q', False, "y")
        elif loss_code == FBP_MLP_XENT_PROBS or loss_code == FBP_MLP_SQUARED:
            target = _data_ptr(y, 2, batch, n_out, self.fmt, False, "y")
        else:
            raise ValueError(f"loss_code: unknown {loss_code}")

        if out is None:
            grads = self._new_grads()
        else:
            grads = out
            if not isinstance(out, list) or len(out) != L:
                raise ValueError(f"out: expected a list of {L} (dW, db) pairs as returned by "
                                 "loss_and_grad, got " + type(out).__name__)
        for l in range(L):
            pair = grads[l]
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(f"out[{l}]: expected a (dW, db) tuple")
            names = self.out_names[l]
            dW_ptrs[l] = _data_ptr(pair[0], 2, self.sizes[l + 1], self.sizes[l], self.fmt, True, names[0])
            db_ptrs[l] = _data_ptr(pair[1], 1, self.sizes[l + 1], 0, self.fmt, True, names[1])

        ws = self._workspace(batch)
        with nogil:   # one GIL release: input checks, then the step
            if self.is_double:
                x_ok = fbp_all_finite_d(<const double *>x_ptr, <Py_ssize_t>batch * n_in)
                if target != NULL:
                    y_ok = fbp_all_finite_d(<const double *>target, <Py_ssize_t>batch * n_out)
            else:
                x_ok = fbp_all_finite_f(<const float *>x_ptr, <Py_ssize_t>batch * n_in)
                if target != NULL:
                    y_ok = fbp_all_finite_f(<const float *>target, <Py_ssize_t>batch * n_out)
            if labels != NULL:
                for i in range(batch):
                    if labels[i] < 0 or labels[i] >= n_out:
                        labels_ok = 0
                        break
            if x_ok and y_ok and labels_ok:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)   # the workspace is shared by every caller
                if self.is_double:
                    st = fbp_mlp_loss_grad_d(&loss, <double **>dW_ptrs, <double **>db_ptrs, <double **>ws.A_ptrs,
                                             <double *>ws.work, <const double *>x_ptr, labels,
                                             <const double *>target, <const double **>self.W_ptrs,
                                             <const double **>self.b_ptrs, self.sizes, self.acts, L, batch,
                                             loss_code, scale, l2)
                else:
                    st = fbp_mlp_loss_grad_f(&loss, <float **>dW_ptrs, <float **>db_ptrs, <float **>ws.A_ptrs,
                                             <float *>ws.work, <const float *>x_ptr, labels,
                                             <const float *>target, <const float **>self.W_ptrs,
                                             <const float **>self.b_ptrs, self.sizes, self.acts, L, batch,
                                             loss_code, scale, l2)
                PyThread_release_lock(self.lock)
        if not x_ok:
            raise ValueError("X: contains NaN or infinity")
        if not y_ok:
            raise ValueError("y: contains NaN or infinity")
        if not labels_ok:
            raise ValueError(f"y: class labels must lie in [0, {n_out}), got values in "
                             f"[{_np.min(y)}, {_np.max(y)}]")
        check_status(st)
        return loss, grads

    def forward(self, X):
        """The network's output A^(L) (B, n_L) as a new array (softmax applied).

        Runs in blocks of at most 1024 rows through one cached workspace."""
        cdef int L = self.n_layers, n_in = self.sizes[0], n_out = self.sizes[L]
        cdef int batch = len(X), start = 0, rows, block, st = FBP_OK, finite_ok = 1
        cdef const char *x_ptr
        cdef char *out_ptr
        cdef size_t item = 8 if self.is_double else 4
        cdef _MLPWorkspace ws
        self._check_params()
        out = _np.empty((batch, n_out), self.dtype)
        if batch == 0:
            return out
        x_ptr = <const char *>_data_ptr(X, 2, batch, n_in, self.fmt, False, "X")
        out_ptr = <char *>_data_ptr(out, 2, batch, n_out, self.fmt, True, "out")
        with nogil:
            if self.is_double:
                finite_ok = fbp_all_finite_d(<const double *>x_ptr, <Py_ssize_t>batch * n_in)
            else:
                finite_ok = fbp_all_finite_f(<const float *>x_ptr, <Py_ssize_t>batch * n_in)
        if not finite_ok:
            raise ValueError("X: contains NaN or infinity")
        block = batch if batch < _FORWARD_BLOCK else _FORWARD_BLOCK
        ws = self._workspace(block)
        with nogil:
            PyThread_acquire_lock(self.lock, WAIT_LOCK)
            while start < batch and st == FBP_OK:
                rows = batch - start if batch - start < block else block
                # the last layer writes straight into the caller's rows of `out`
                ws.fwd_ptrs[L - 1] = out_ptr + <size_t>start * n_out * item
                if self.is_double:
                    st = fbp_mlp_forward_d(<double **>ws.fwd_ptrs, <double *>ws.work, <const double *>(x_ptr + <size_t>start * n_in * item),
                                           <const double **>self.W_ptrs, <const double **>self.b_ptrs,
                                           self.sizes, self.acts, L, rows)
                else:
                    st = fbp_mlp_forward_f(<float **>ws.fwd_ptrs, <float *>ws.work, <const float *>(x_ptr + <size_t>start * n_in * item),
                                           <const float **>self.W_ptrs, <const float **>self.b_ptrs,
                                           self.sizes, self.acts, L, rows)
                start += rows
            PyThread_release_lock(self.lock)
        check_status(st)
        return out
