"""fastbp.onnx.export: the exported graph computes model.forward, for every
model and configuration (cells, peepholes, stacks, bidirectional, many-to-one,
lengths with rows of length 0, initial states fed or not), in onnxruntime
(float32, 1e-5 relative) and in ONNX's reference evaluator (float64, 1e-9);
the graph passes onnx.checker; its inputs and outputs are the documented ones;
bad arguments are refused by name; onnx stays an optional import.

onnx and onnxruntime are optional peers (the "onnx" extra; CI installs
onnx==1.23.2 and onnxruntime==1.32.0)."""
import itertools

import numpy as np
import pytest
from cells.cells import FULL_CELLS, KERNEL_CELLS
from installed_python import run_python

import fastbp
import fastbp.onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.op_run import OpRun  # noqa: E402
from onnx.reference.ops import op_gru, op_lstm, op_rnn  # noqa: E402

I, H, O, T, B = 3, 5, 4, 6, 4
LENGTHS = np.array([6, 0, 3, 1], np.int32)          # unsorted, a full row and an empty one
ORT_TOL = dict(rtol=1e-5, atol=1e-6)
REF_TOL = dict(rtol=1e-9, atol=1e-12)
CONFIGS = list(itertools.product([1, 2], [False, True], [False, True]))   # layers, bidi, m2o


def config_id(c):
    L, bi, m2o = c
    return f"L{L}" + ("-bi" if bi else "") + ("-m2o" if m2o else "")


def make(cell, config, dtype, seed=1, **kw):
    L, bi, m2o = config
    return cell.model_class(I, H, O, **cell.options, dtype=dtype, num_layers=L, bidirectional=bi,
                            many_to_one=m2o, seed=seed, **kw)


def session(proto):
    options = ort.SessionOptions()
    options.log_severity_level = 3          # no warning about the optional inputs' defaults
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def states_shape(net, batch=B):
    D = 2 if net.bidirectional else 1
    return (net.num_layers * D, batch, H) if net.num_layers > 1 or net.bidirectional else (batch, H)


def feeds_and_expected(cell, net, rng, with_lengths, with_states, T_=T, B_=B, lengths=LENGTHS):
    """The graph's feed and forward's (Y, h_n[, c_n]) for one combination."""
    X = rng.standard_normal((T_, B_, I)).astype(net.dtype)
    feed, args = {"X": X}, {}
    if with_lengths:
        feed["lengths"] = args["lengths"] = lengths
    if with_states:
        for s in cell.state_names:
            feed[s + "0"] = args[s + "0"] = rng.standard_normal(states_shape(net, B_)).astype(
                net.dtype)
    out, final = net.forward(X, **args)
    return feed, [out] + (list(final) if isinstance(final, tuple) else [final])


def assert_outputs(got, want, tol, what):
    assert len(got) == len(want), what
    for name, g, w in zip(["Y", "h_n", "c_n"], got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (what, name, g.shape, w.shape)
        np.testing.assert_allclose(g, w, **tol, err_msg=f"{what}: {name}")


# ---- onnxruntime, float32: every combination ---------------------------------------------

@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_onnxruntime_equals_forward_for_every_combination(cell, config):
    rng = np.random.default_rng(0)
    net = make(cell, config, "float32")
    sess = session(fastbp.onnx.export(net))
    for with_lengths, with_states in itertools.product([False, True], [False, True]):
        feed, want = feeds_and_expected(cell, net, rng, with_lengths, with_states)
        assert_outputs(sess.run(None, feed), want, ORT_TOL,
                       f"lengths={with_lengths} states={with_states}")


@pytest.mark.parametrize("forget_bias", [None, 1.0, 2.5])
@pytest.mark.parametrize("peepholes", [False, True])
def test_lstm_forget_bias_and_peepholes_export(forget_bias, peepholes):
    rng = np.random.default_rng(1)
    cell = [c for c in FULL_CELLS if c.name == "lstm"][0]
    net = fastbp.LSTM(I, H, O, peepholes=peepholes, forget_bias=forget_bias, dtype="float32",
                      num_layers=2, seed=3)
    if peepholes:          # peepholes of every size, not only their initial values
        for name in net.params:
            if name.startswith("peephole"):
                net.params[name][...] = rng.uniform(-1, 1, H)
    sess = session(fastbp.onnx.export(net))
    feed, want = feeds_and_expected(cell, net, rng, True, True)
    assert_outputs(sess.run(None, feed), want, ORT_TOL, "lstm")


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_rows_of_length_zero_keep_their_initial_state(cell):
    """onnxruntime alone returns zeros there; the exported graph gives fastbp's answer."""
    rng = np.random.default_rng(2)
    net = make(cell, (2, True, False), "float32")
    feed, want = feeds_and_expected(cell, net, rng, True, True,
                                    lengths=np.array([0, 4, 0, 6], np.int32))
    got = session(fastbp.onnx.export(net)).run(None, feed)
    assert_outputs(got, want, ORT_TOL, "zero lengths")
    for k, s in enumerate(cell.state_names):
        np.testing.assert_array_equal(got[1 + k][:, [0, 2]], feed[s + "0"][:, [0, 2]])
    assert not got[0][:, [0, 2]].any()            # and no outputs


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_time_and_batch_are_dynamic(cell):
    rng = np.random.default_rng(3)
    net = make(cell, (2, False, False), "float32")
    sess = session(fastbp.onnx.export(net))
    for T_, B_ in ((1, 1), (9, 5), (2, 7)):
        lengths = rng.integers(0, T_ + 1, B_).astype(np.int32)
        feed, want = feeds_and_expected(cell, net, rng, True, True, T_=T_, B_=B_,
                                        lengths=lengths)
        assert_outputs(sess.run(None, feed), want, ORT_TOL, f"T={T_} B={B_}")


def test_a_trained_model_exports_what_it_learned():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((8, 32, I)).astype(np.float32)
    Y = np.cumsum(X, axis=0)[..., :2]
    net = fastbp.GRU(I, H, 2, dtype="float32", seed=0, num_layers=2)
    before = fastbp.onnx.export(net)
    net.fit(X, Y, epochs=3, batch_size=8, progress=False, seed=0)
    after = session(fastbp.onnx.export(net)).run(None, {"X": X})
    np.testing.assert_allclose(after[0], net.forward(X)[0], **ORT_TOL)
    assert not np.allclose(session(before).run(None, {"X": X})[0], after[0])


# ---- the reference evaluator, float64 ------------------------------------------------------

def _row_by_row(base):
    """An ONNX reference operator that honours ``sequence_lens`` (onnx's own
    ignores it): each row runs alone over its valid steps, the spec's
    semantics; outputs past a row's length are zero, a row of length 0 gives
    zero outputs and a zero final state (onnxruntime's answer)."""

    def _run(self, X, W, R, B_=None, sequence_lens=None, *states_and_more, **attrs):
        if sequence_lens is None:
            return base._run(self, X, W, R, B_, None, *states_and_more, **attrs)
        T_, batch = X.shape[:2]
        D, Hd = R.shape[0], R.shape[-1]
        n_out = len(self.onnx_node.output)
        outs = [np.zeros((T_, D, batch, Hd), X.dtype)] + [np.zeros((D, batch, Hd), X.dtype)
                                                           for _ in range(n_out - 1)]
        for b in range(batch):
            n = int(sequence_lens[b])
            if n == 0:
                continue
            # initial states (D, batch, H) are sliced to the row; P (D, 3H) is not
            rest = [a[:, b:b + 1] if a is not None and a.ndim == 3 else a
                    for a in states_and_more]
            res = base._run(self, X[:n, b:b + 1], W, R, B_, None, *rest, **attrs)
            outs[0][:n, :, b] = res[0][:, :, 0]
            for k in range(1, n_out):
                outs[k][:, b] = res[k][:, 0]
        return tuple(outs)
    return type(base.__name__.split("_")[0], (base,), {"op_domain": "", "_run": _run,
                                                       "__doc__": _row_by_row.__doc__})


class RNN(op_rnn.RNN_14):
    """onnx's reference RNN with the spec's Relu activation, which it lacks
    (onnx 1.23.2 knows Tanh and Affine only)."""
    op_domain = ""

    def choose_act(self, name, alpha, beta):
        if name in ("Relu", "relu"):
            return lambda x: np.maximum(x, 0)
        return super().choose_act(name, alpha, beta)


ROW_BY_ROW = [_row_by_row(op_lstm.LSTM), _row_by_row(op_gru.GRU), _row_by_row(RNN)]
assert all(issubclass(c, OpRun) for c in ROW_BY_ROW)


@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float64_graphs_equal_forward_in_the_reference_evaluator(cell, config):
    rng = np.random.default_rng(5)
    net = make(cell, config, "float64")
    proto = fastbp.onnx.export(net)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    evaluator = ReferenceEvaluator(proto, new_ops=[RNN])
    for with_states in (False, True):
        feed, want = feeds_and_expected(cell, net, rng, False, with_states)
        assert_outputs(evaluator.run(None, feed), want, REF_TOL, f"states={with_states}")


@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float64_graphs_with_lengths_equal_forward_row_by_row(cell, config):
    """onnx's reference RNN/LSTM/GRU ignore sequence_lens: the evaluator runs
    here with operators that follow the spec's sequence_lens row by row."""
    rng = np.random.default_rng(6)
    net = make(cell, config, "float64")
    evaluator = ReferenceEvaluator(fastbp.onnx.export(net), new_ops=ROW_BY_ROW)
    for with_states in (False, True):
        feed, want = feeds_and_expected(cell, net, rng, True, with_states)
        assert_outputs(evaluator.run(None, feed), want, REF_TOL, f"states={with_states}")


# ---- the MLP -------------------------------------------------------------------------------

MLP_CASES = [("relu", "softmax", "cross_entropy"), ("tanh", "identity", "mse"),
             (["sigmoid", "identity"], "sigmoid", "mse"), (["softmax", "relu"], "tanh", "mse")]


@pytest.mark.parametrize("activation,output,loss", MLP_CASES)
def test_mlp_graphs_equal_forward(activation, output, loss):
    rng = np.random.default_rng(7)
    hidden = [7] * (1 if isinstance(activation, str) else len(activation))
    for dtype in ("float32", "float64"):
        net = fastbp.MLP([I] + hidden + [O], activation=activation, output=output, loss=loss,
                         dtype=dtype, seed=1)
        proto = fastbp.onnx.export(net)
        X = rng.standard_normal((9, I)).astype(dtype)
        want = net.forward(X)
        if dtype == "float32":
            got = session(proto).run(None, {"X": X})
            assert_outputs(got, [want], ORT_TOL, "mlp")
        got = ReferenceEvaluator(proto).run(None, {"X": X})
        assert_outputs(got, [want], REF_TOL if dtype == "float64" else ORT_TOL, "mlp ref")
    assert [i.name for i in proto.graph.input] == ["X"]
    assert [o.name for o in proto.graph.output] == ["Y"]


# ---- the graph's interface -------------------------------------------------------------------

def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
@pytest.mark.parametrize("config", [(1, False, False), (2, True, True)], ids=config_id)
def test_inputs_and_outputs_are_the_documented_ones(cell, config):
    net = make(cell, config, "float32")
    proto = fastbp.onnx.export(net)
    onnx.checker.check_model(proto, full_check=True)
    state = ([2 * 2, "B", H] if config[0] == 2 else ["B", H])
    inputs = {i.name: _dims(i) for i in proto.graph.input}
    states = [s + "0" for s in cell.state_names]
    assert list(inputs) == ["X", "lengths"] + states
    assert inputs["X"] == ["T", "B", I] and inputs["lengths"] == ["B"]
    assert proto.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert all(inputs[s] == state for s in states)
    outputs = {o.name: _dims(o) for o in proto.graph.output}
    assert list(outputs) == ["Y"] + [s + "_n" for s in cell.state_names]
    assert outputs["Y"] == (["B", O] if config[2] else ["T", "B", O])
    assert all(outputs[s + "_n"] == state for s in cell.state_names)
    # the optional inputs are overridable defaults, not inputs onnxruntime requires
    sess = session(proto)
    assert [i.name for i in sess.get_inputs()] == ["X"]
    assert sorted(i.name for i in sess.get_overridable_initializers()) == sorted(
        ["lengths"] + states)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["fastbp.model"] == type(net).__name__ and proto.producer_name == "fastbp"


def test_the_graph_holds_the_weights_in_onnx_gate_order():
    """LSTM i, f, g, o -> i, o, f, c with P = [p_i, p_o, p_f]; GRU r, z, n -> z, r, h."""
    net = fastbp.LSTM(I, H, O, peepholes=True, dtype="float64", seed=0)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in fastbp.onnx.export(net).graph.initializer}
    W = next(v for k, v in inits.items() if k.startswith("W_l0"))[0]
    i, f, g, o = np.split(net.params["weight_ih"], 4)
    np.testing.assert_array_equal(W, np.concatenate([i, o, f, g]))
    P = next(v for k, v in inits.items() if k.startswith("P_l0"))[0]
    np.testing.assert_array_equal(P, np.concatenate([net.params["peephole_i"],
                                                     net.params["peephole_o"],
                                                     net.params["peephole_f"]]))
    gru = fastbp.GRU(I, H, O, dtype="float64", seed=0)
    proto = fastbp.onnx.export(gru)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    R = next(v for k, v in inits.items() if k.startswith("R_l0"))[0]
    r, z, n = np.split(gru.params["weight_hh"], 3)
    np.testing.assert_array_equal(R, np.concatenate([z, r, n]))
    node = next(n for n in proto.graph.node if n.op_type == "GRU")
    assert onnx.helper.get_node_attr_value(node, "linear_before_reset") == 1


def test_the_rnn_identity_is_an_affine_activation():
    net = fastbp.RNN(I, H, O, nonlinearity="identity", bidirectional=True)
    node = next(n for n in fastbp.onnx.export(net).graph.node if n.op_type == "RNN")
    attr = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attr["activations"] == [b"Affine", b"Affine"]
    assert list(attr["activation_alpha"]) == [1.0, 1.0] and list(attr["activation_beta"]) == [0, 0]


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets_run_in_onnxruntime(opset):
    cell = [c for c in FULL_CELLS if c.name == "lstm"][0]
    net = make(cell, (2, True, False), "float32")
    proto = fastbp.onnx.export(net, opset=opset)
    assert proto.opset_import[0].version == opset
    feed, want = feeds_and_expected(cell, net, np.random.default_rng(8), True, True)
    assert_outputs(session(proto).run(None, feed), want, ORT_TOL, f"opset {opset}")


def test_default_and_newest_opsets_pass_the_checker():
    net = fastbp.GRU(I, H, O, num_layers=2)
    assert fastbp.onnx.export(net).opset_import[0].version == fastbp.onnx.DEFAULT_OPSET == 17
    newest = onnx.defs.onnx_opset_version()
    onnx.checker.check_model(fastbp.onnx.export(net, opset=newest), full_check=True)


def test_path_writes_the_model(tmp_path):
    net = fastbp.RNN(I, H, O, dtype="float32")
    for path in (tmp_path / "a.onnx", str(tmp_path / "b.onnx")):
        proto = fastbp.onnx.export(net, path)
        assert isinstance(proto, onnx.ModelProto)
        assert onnx.load(path) == proto


def test_bad_arguments_are_refused_by_name(tmp_path):
    net = fastbp.LSTM(I, H, O)
    for model in (None, "lstm", object()):
        with pytest.raises(TypeError, match="^model"):
            fastbp.onnx.export(model)
    with pytest.raises(TypeError, match="^path"):
        fastbp.onnx.export(net, 3)
    for opset, err in ((12, ValueError), (onnx.defs.onnx_opset_version() + 1, ValueError),
                       ("17", TypeError), (17.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match="^opset"):
            fastbp.onnx.export(net, opset=opset)
    assert not list(tmp_path.iterdir())


def test_a_replaced_parameter_is_refused_by_name():
    net = fastbp.GRU(I, H, O)
    dict.__setitem__(net.params, "weight_hh", np.zeros((3 * H, H)))   # behind set_params
    with pytest.raises(ValueError, match="weight_hh"):
        fastbp.onnx.export(net)


def test_onnx_is_imported_only_by_export():
    code = ("import sys, fastbp, fastbp.onnx; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules; "
            "sys.modules['onnx'] = None\n"
            "try:\n"
            "    fastbp.onnx.export(fastbp.RNN(2, 3, 1))\n"
            "except ImportError as e:\n"
            "    assert 'fastbp[onnx]' in str(e), e\n"
            "else:\n"
            "    raise SystemExit('no ImportError')\n")
    result = run_python(code, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
