"""The ``fastbp bench`` command and the code it shares with the README table.

- :mod:`.workloads`   -- the MLP, RNN, LSTM and GRU training steps: inputs, FLOPs, and the
  fastbp and NumPy-reference implementations; the gradient comparison
- :mod:`.peers_torch` -- the same steps as torch.nn modules with fastbp's weights
- :mod:`.peers_jax`   -- the same steps as ``jax.jit(jax.value_and_grad(...))``
- :mod:`.harness`     -- timing (first call apart, calibrated loops, medians) and the
  GEMM ceiling
- :mod:`.env`         -- CPU, BLAS libraries and kernels, OPENBLAS_CORETYPE, versions
- :mod:`.report`      -- the text table, JSON and the matplotlib plot
- :mod:`.cli`         -- options, the run, Ctrl-C

PyTorch, JAX, threadpoolctl and matplotlib are optional and imported lazily.
"""
