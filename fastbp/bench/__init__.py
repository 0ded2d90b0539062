"""The ``fastbp bench`` command and the code it shares with the README table.

- :mod:`.workloads`   -- the MLP, RNN, LSTM and GRU training steps and the LSTM inference:
  inputs, FLOPs, and the fastbp and NumPy-reference implementations; the comparison
- :mod:`.peers_torch` -- the same steps as torch.nn modules with fastbp's weights
- :mod:`.peers_jax`   -- the same steps as ``jax.jit(jax.value_and_grad(...))``
- :mod:`.peers_onnx`  -- the inference workload as a one-node ONNX LSTM graph in onnxruntime
- :mod:`.harness`     -- timing (first call apart, calibrated loops, medians) and the
  GEMM ceiling
- :mod:`.env`         -- CPU, BLAS libraries and kernels, OPENBLAS_CORETYPE, versions
- :mod:`.report`      -- the text table, JSON and the matplotlib plot
- :mod:`.cli`         -- options, the run, Ctrl-C

PyTorch, JAX, onnx/onnxruntime, threadpoolctl and matplotlib are optional and imported lazily.
"""
