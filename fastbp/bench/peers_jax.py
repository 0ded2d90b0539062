"""JAX peers: the same training steps as ``jax.jit(jax.value_and_grad(loss))``.

The recurrences are ``lax.scan`` over time with the input projection of all
T·B rows hoisted out of the loop (one matmul), as a JAX user would write them.
The first call compiles; the harness reports it apart from the steady state.
JAX computes in float32 unless ``jax_enable_x64`` is on, which a float64 run
switches on. XLA's CPU threads are not governed by ``--threads``.
"""
import numpy as np

from .workloads import CELL_STATES, NOT_INSTALLED, RNN_PARAMS, Runner, Unavailable


def import_jax():
    try:
        import jax
    except ImportError:
        raise Unavailable(NOT_INSTALLED, "JAX is not installed (pip install jax)") from None
    return jax


def _setup(p):
    jax = import_jax()
    if p.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    return jax, jax.numpy


def _runner(jax, fn, args, to_grads):
    """step() runs fn(*args) to completion (JAX dispatches asynchronously)."""
    def step():
        return jax.block_until_ready(fn(*args))

    def grads():
        return {k: np.asarray(v) for k, v in to_grads(step()[1]).items()}
    return Runner(step, grads)


def jax_mlp(p):
    jax, jnp = _setup(p)
    d = p.data

    def loss(params, X, y):
        h = X
        for W, b in params[:-1]:
            h = jax.nn.relu(h @ W.T + b)
        W, b = params[-1]
        logp = jax.nn.log_softmax(h @ W.T + b)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in d["params"]]
    args = (params, jnp.asarray(d["X"]), jnp.asarray(d["y"].astype(np.int32)))

    def to_grads(g):
        out = {}
        for l, (dW, db) in enumerate(g, start=1):
            out[f"W{l}"], out[f"b{l}"] = dW, db
        return out
    return _runner(jax, jax.jit(jax.value_and_grad(loss)), args, to_grads)


def jax_rnn(p):
    jax, jnp = _setup(p)
    d = p.data

    def loss(P, X, Y):
        xw = X @ P["weight_ih"].T + P["bias_ih"] + P["bias_hh"]   # (T, B, H), all steps at once

        def cell(h, xw_t):
            h = jnp.tanh(xw_t + h @ P["weight_hh"].T)
            return h, h
        h0 = jnp.zeros((X.shape[1], P["weight_hh"].shape[0]), X.dtype)
        _, hs = jax.lax.scan(cell, h0, xw)
        out = hs @ P["weight_out"].T + P["bias_out"]
        return jnp.mean(jnp.sum((out - Y) ** 2, axis=-1))

    P = {k: jnp.asarray(d["params"][k]) for k in RNN_PARAMS}
    args = (P, jnp.asarray(d["X"]), jnp.asarray(d["Y"]))
    return _runner(jax, jax.jit(jax.value_and_grad(loss)), args, lambda g: g)


def _cell_runner(jax, jnp, p, hoisted_bias, cell):
    """Loss sum(h·R) of a one-layer cell scanned over time: ``xw = X W_ihᵀ +
    hoisted_bias(P)`` for all T·B rows at once, then ``cell(P, carry, xw_t) ->
    (carry, h)`` per step from zero states (the carry a tuple of them)."""
    d = p.data

    def loss(P, X, R):
        xw = X @ P["weight_ih"].T + hoisted_bias(P)                # (T, B, G·H)
        zeros = jnp.zeros((X.shape[1], P["weight_hh"].shape[1]), X.dtype)
        carry = (zeros,) * CELL_STATES[d["cell"]]
        _, hs = jax.lax.scan(lambda c, xw_t: cell(P, c, xw_t), carry, xw)
        return jnp.sum(hs * R)

    P = {k: jnp.asarray(v) for k, v in d["params"].items()}
    args = (P, jnp.asarray(d["X"]), jnp.asarray(d["R"]))

    def to_grads(g):
        dP, dX = g
        return dict(dP, x=dX)
    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return _runner(jax, fn, args, to_grads)


def jax_lstm(p):
    jax, jnp = _setup(p)

    def cell(P, carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ P["weight_hh"].T, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h
    return _cell_runner(jax, jnp, p, lambda P: P["bias_ih"] + P["bias_hh"], cell)


def jax_gru(p):
    """torch.nn.GRU's cell: b_hh stays in the step, r scales the recurrent side of n."""
    jax, jnp = _setup(p)

    def cell(P, carry, xw_t):
        (h,) = carry
        xr, xz, xn = jnp.split(xw_t, 3, axis=-1)
        hr, hz, hn = jnp.split(h @ P["weight_hh"].T + P["bias_hh"], 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        h = (1 - z) * jnp.tanh(xn + r * hn) + z * h
        return (h,), h
    return _cell_runner(jax, jnp, p, lambda P: P["bias_ih"], cell)


BUILDERS = {"mlp": jax_mlp, "rnn": jax_rnn, "lstm": jax_lstm, "gru": jax_gru}
