"""The pool of freed large blocks (src_c/pool.c) and the NumPy allocator over
it (src_c/numpy_pool.h, fastbp/_memory.py): which arrays use it, that a
reused block never changes a result (np.zeros still zeroes), its limit, its
API's checks, and many threads allocating and freeing at once."""
import os
import threading

import numpy as np
import pytest

import fastbp
from fastbp import _core, _memory
from cells import cells

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:                     # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

BIG = _core.POOL_MIN_BYTES // 8         # float64 elements in the smallest kept block


@pytest.fixture
def pool_limit():
    """A pool of 64 MiB for the test (the sanitizer build keeps none by
    default), emptied before and after."""
    old = fastbp.set_memory_pool(64 << 20)
    fastbp.release_memory()
    yield
    fastbp.release_memory()
    fastbp.set_memory_pool(old)


def _pooled(fn, *args):
    return _memory.pooled(fn)(*args)


def test_only_what_fastbp_allocates_uses_the_pool(pool_limit):
    rng = np.random.default_rng(0)
    p = cells.problem(cells.MODEL_CELLS[1], rng, 20, 16, 8, 64)     # the LSTM
    y, finals, cache = cells.forward(cells.MODEL_CELLS[1], p["x"], p["states"], p["weights"])
    g = cells.backward(cells.MODEL_CELLS[1], p["dy"], p["dfinals"], cache)
    assert get_handler_name(y.base if y.base is not None else y) == "fastbp_pool"
    assert get_handler_name(g["weight_hh"]) == "fastbp_pool"
    assert get_handler_name(np.empty(BIG)) != "fastbp_pool"     # the caller's own arrays
    assert get_handler_name(p["x"]) != "fastbp_pool"


@pytest.mark.parametrize("cell", cells.MODEL_CELLS, ids=str)
def test_a_training_step_reuses_its_buffers_and_gives_the_same_results(cell, pool_limit):
    """Buffers above the smallest kept block, W_hh's gradient included: the second and
    later steps take their buffers from the pool, and give what a step with
    no pool gives, bit for bit (the gradients accumulate into np.zeros, which
    must still be zeros)."""
    rng = np.random.default_rng(1)
    net = cells.model(cell, 8, 192, 3, seed=2)     # dW_hh: 295 KiB and more, kept
    X = rng.standard_normal((40, 32, 8))
    Y = rng.standard_normal((40, 32, 3))
    before = fastbp.memory_pool_info()["reused"]
    pooled = []
    for _ in range(3):      # copies kept: the step's own arrays go back to the pool
        loss, grads, _ = cells.model_loss_and_grad(cell, net, X, Y)
        pooled.append((loss, {k: np.array(v) for k, v in grads.items()}))
        del grads
    assert fastbp.memory_pool_info()["reused"] > before
    fastbp.set_memory_pool(0)
    plain = cells.model_loss_and_grad(cell, net, X, Y)
    for loss, grads in pooled:
        assert loss == plain[0]
        for k in plain[1]:
            np.testing.assert_array_equal(grads[k], plain[1][k], err_msg=k)


def test_a_reused_block_is_zeroed_for_zeros_and_whole_for_empty(pool_limit):
    junk = _pooled(np.full, BIG, 7.0)
    del junk                                            # kept, full of sevens
    assert fastbp.memory_pool_info()["blocks"] == 1
    z = _pooled(np.zeros, BIG)
    assert fastbp.memory_pool_info()["blocks"] == 0     # taken back
    assert not z.any()
    del z
    e = _pooled(np.empty, BIG)
    e[:] = 3.0                                          # the whole block is usable
    assert (e == 3.0).all()


def test_small_blocks_are_not_kept_and_sizes_do_not_mix(pool_limit):
    small = _pooled(np.ones, BIG // 2)
    del small
    assert fastbp.memory_pool_info()["blocks"] == 0
    a = _pooled(np.ones, BIG)
    del a
    b = _pooled(np.ones, BIG + 1)                       # another size: a fresh block
    assert fastbp.memory_pool_info()["blocks"] == 1
    assert b.sum() == BIG + 1


def test_the_limit_frees_the_oldest_blocks_and_release_empties_the_pool(pool_limit):
    fastbp.set_memory_pool(3 * _core.POOL_MIN_BYTES)
    blocks = [_pooled(np.ones, BIG + k) for k in range(5)]
    while blocks:
        blocks.pop(0)                                   # freed in order: 0, 1, .., 4
    info = fastbp.memory_pool_info()
    assert info["blocks"] == 2 and info["bytes"] == 8 * (2 * BIG + 7)   # 3 and 4
    _pooled(np.empty, BIG)                              # 0 was freed: a fresh block ...
    assert fastbp.memory_pool_info()["blocks"] == 3 - 1    # ... which, freed, evicts 3
    taken = _pooled(np.empty, BIG + 4)                  # 4 is still there
    assert fastbp.memory_pool_info()["blocks"] == 1
    del taken
    assert fastbp.release_memory() > 0
    assert fastbp.memory_pool_info()["bytes"] == 0
    assert fastbp.memory_pool_info()["blocks"] == 0
    fastbp.set_memory_pool(0)
    gone = _pooled(np.ones, BIG)
    del gone
    assert fastbp.memory_pool_info()["blocks"] == 0


def test_release_returns_the_bytes_it_freed(pool_limit):
    a, b = _pooled(np.ones, BIG), _pooled(np.ones, BIG + 8)
    del a, b
    kept = fastbp.memory_pool_info()["bytes"]
    assert kept == 8 * (2 * BIG + 8)
    assert fastbp.release_memory() == kept
    assert fastbp.release_memory() == 0


def test_set_memory_pool_checks_its_argument(pool_limit):
    for bad, err in ((-1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)):
        with pytest.raises(err, match="max_bytes: expected"):
            fastbp.set_memory_pool(bad)
    assert fastbp.set_memory_pool(1 << 20) == 64 << 20
    assert fastbp.memory_pool_info()["limit"] == 1 << 20


def test_threads_allocating_and_freeing_at_once_keep_their_own_data(pool_limit):
    """Eight threads take and give back blocks of two sizes: each block
    holds what its thread wrote until the thread lets it go."""
    errors = []

    def work(tid):
        rng = np.random.default_rng(tid)
        try:
            for _ in range(300):
                n = BIG + 8 * int(rng.integers(0, 2))
                a = _pooled(np.empty, n)
                a.fill(tid)
                b = _pooled(np.zeros, n)
                if not ((a == tid).all() and not b.any()):
                    errors.append(tid)
                del a, b
        except Exception as e:          # report it from the main thread
            errors.append(repr(e))
    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fastbp.memory_pool_info()["reused"] > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists on POSIX systems only")
def test_a_forked_child_allocates_from_its_copy_of_the_pool(pool_limit):
    kept = _pooled(np.ones, BIG)
    del kept
    pid = os.fork()
    if pid == 0:        # the child: take the kept block, free it, release, exit
        ok = False
        try:
            a = _pooled(np.zeros, BIG)
            ok = not a.any() and fastbp.memory_pool_info()["blocks"] == 0
            del a
            ok = ok and fastbp.release_memory() == 8 * BIG
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert fastbp.memory_pool_info()["blocks"] == 1     # the parent's is still there
