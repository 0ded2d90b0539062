"""The optimizers take the same steps as torch.optim on the same gradients."""
import numpy as np
import pytest

from fastbp.optim import SGD, Adam

torch = pytest.importorskip("torch")

CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    (Adam, torch.optim.Adam, dict(lr=0.01)),
    (Adam, torch.optim.Adam, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
]


@pytest.mark.parametrize("ours, theirs, kw", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_steps_match_torch_optim(ours, theirs, kw):
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (4,), (2, 4)]
    params = [rng.standard_normal(s) for s in shapes]
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    opt, topt = ours(**kw), theirs(tparams, **kw)
    for _ in range(6):
        grads = [rng.standard_normal(s) for s in shapes]
        opt.step(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
