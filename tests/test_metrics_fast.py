"""The fast float64 conv_outputs (im2col + GEMM, worker threads) against the module's own forward
(conv_outputs_reference): equal to 1e-12 relative in the max norm on small data built here."""
import numpy as np
import pytest
import torch
from torch import nn

from models.lenet5 import LeNet5
from pipelines import metrics as M

TOL = 1e-12


def rel_diff(a, b) -> float:
    """max |a - b| / max |b| (the max-norm relative difference)."""
    return float((a - b).abs().max() / b.abs().max())


def lenet5_features64(seed=0):
    f = LeNet5(seed=seed).features.double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # LeNet5 starts with zero biases: give them values so the bias path counts
        for m in f:
            if isinstance(m, nn.Conv2d):
                m.bias.copy_(torch.rand(m.bias.shape, generator=g, dtype=torch.float64) * 0.2 - 0.1)
    return f


def images(n, shape=(1, 28, 28), seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))  # float32 in [0, 1]


def odd_features():
    """Stride 2, padding 1, a 1x1 conv, a conv without bias, dilation with "same" padding, pools the
    fast path takes (kernel = stride) and one it does not (3, stride 2), and a Flatten."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 1),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 6, 3, dilation=2, padding="same"), nn.ReLU(),
        nn.Conv2d(6, 5, (2, 3), stride=(1, 2), padding=(0, 2)),
        nn.MaxPool2d(3, stride=2), nn.Flatten(),
    ).double()


def test_lenet5_fast_matches_reference_to_1e12():
    f, x = lenet5_features64(), images(64)
    ref = M.conv_outputs_reference(f, x)
    fast = M.conv_outputs(f, x)
    assert fast.shape == ref.shape == (64, 784) and fast.dtype == torch.float64
    assert rel_diff(fast, ref) <= TOL


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_any_chunk_size_and_numpy_input(batch_size):
    f, x = lenet5_features64(seed=3), images(23, seed=1)
    ref = M.conv_outputs_reference(f, x)
    fast = M.conv_outputs(f, x.numpy(), batch_size=batch_size)
    assert fast.shape == ref.shape and rel_diff(fast, ref) <= TOL


def test_stride_padding_1x1_no_bias_dilation_and_fallback_layers():
    f, x = odd_features(), images(40, shape=(3, 20, 17), seed=2)
    ref = M.conv_outputs_reference(f, x)
    fast = M.conv_outputs(f, x, batch_size=16)
    assert fast.shape == ref.shape and fast.dtype == torch.float64
    assert rel_diff(fast, ref) <= TOL
    kinds = [None if s is None else s[0] for s, _ in M._fast_plan(f)]
    assert kinds.count("conv") == 5 and kinds.count(None) == 2  # MaxPool2d(3, 2) and Flatten
    assert any(s[1] for s, _ in M._fast_plan(f) if s is not None and s[0] == "conv")  # a row-GEMM conv


def test_float32_model_takes_the_reference_path():
    f, x = LeNet5(seed=0).features, images(16)
    fast = M.conv_outputs(f, x)
    assert fast.dtype == torch.float32
    assert torch.equal(fast, M.conv_outputs_reference(f, x))
    assert M._fast_plan(f) is None


def test_hooked_layer_runs_its_own_forward():
    f, x = lenet5_features64(), images(8)
    f[1].register_forward_hook(lambda mod, inp, out: out * 2.0)
    assert M._fast_plan(f)[1][0] is None
    assert rel_diff(M.conv_outputs(f, x), M.conv_outputs_reference(f, x)) <= TOL


def test_two_worker_threads_and_the_thread_setting_is_restored():
    f, x = lenet5_features64(), images(100, seed=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fast = M.conv_outputs(f, x, batch_size=8)  # 13 chunks over 2 workers
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert rel_diff(fast, M.conv_outputs_reference(f, x)) <= TOL


def test_errors_reach_the_caller_from_the_first_chunk_and_from_workers():
    f = lenet5_features64()
    with pytest.raises(RuntimeError):  # 2 channels for a 1-channel conv
        M.conv_outputs(f, np.zeros((10, 2, 28, 28), dtype=np.float32), batch_size=2)
    calls = []

    def fail_later(mod, inp, out):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("third chunk")

    f[1].register_forward_hook(fail_later)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="third chunk"):
            M.conv_outputs(f, images(10), batch_size=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtypes", [(torch.float64, torch.float64), (torch.float32, torch.float64)])
def test_output_errors_in_row_chunks_is_bit_for_bit_the_whole_array_formula(dtypes):
    g = torch.Generator().manual_seed(5)
    f = torch.rand((3000, 50), generator=g, dtype=torch.float64).to(dtypes[0])
    approx = (f.double() + 1e-9 * torch.randn((3000, 50), generator=g, dtype=torch.float64)).to(dtypes[1])
    f[7] = 0.0                       # a zero row: ratio 0 if matched exactly, inf otherwise
    approx[7] = 0.0
    approx[8] = f[8].to(dtypes[1])   # an exact row
    err, top = M._row_maxima(f, approx, rows=256)
    assert torch.equal(err, (f - approx).abs().amax(dim=1)) and torch.equal(top, f.abs().amax(dim=1))
    assert err.dtype == (f - approx).dtype and top.dtype == f.dtype
    whole = (f - approx).abs().amax(dim=1), f.abs().amax(dim=1)
    ratio = M.relative_errors(*whole)
    expected = {"per_image": float(ratio.max()), "global": float(whole[0].max()) / float(whole[1].max()),
                "max_abs": float(whole[0].max())}
    assert M.output_errors(f, approx) == expected


def test_inputs_the_fast_steps_do_not_take_go_to_the_layers_own_forward():
    f = nn.Sequential(nn.Conv2d(2, 3, 3)).double()   # no padding: the chunk itself is the im2col source
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)  # 1 channel for a 2-channel conv
    with pytest.raises(RuntimeError):                # as the module raises, never the next image's pixels
        M.conv_outputs(f, x, batch_size=2)
    small = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(4)).double()
    y = torch.rand(5, 1, 3, 3)                       # smaller than the pool kernel: the module raises
    with pytest.raises(RuntimeError):
        M.conv_outputs(small, y)
