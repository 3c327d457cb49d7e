"""The MRF patch model (Li & Wand 2016) on tiny random maps: matching against brute force, the loss by hand,
its gradient, and the errors users can trigger."""

import numpy as np
import pytest
import torch

from stylize.engine.mrf import PatchBank, mrf_loss, mrf_target, nearest_patches, patch_bank, target_loss
from stylize.errors import StylizeError


def rand_map(c: int, h: int, w: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def brute_force(features: torch.Tensor, bank: PatchBank) -> np.ndarray:
    """Normalized cross-correlation of every window with every bank patch, first maximum wins."""
    f = features[0].double().numpy()
    patches = bank.raw.double().numpy()
    k = bank.patch
    out = np.zeros((f.shape[1] - k + 1, f.shape[2] - k + 1), dtype=np.int64)
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            window = f[:, y:y + k, x:x + k]
            scores = [(window * p).sum() / (np.linalg.norm(window) * np.linalg.norm(p)) for p in patches]
            out[y, x] = int(np.argmax(scores))
    return out


def test_bank_holds_every_patch_in_raster_order():
    style = rand_map(2, 4, 5, seed=0)
    bank = patch_bank(style, patch=3)
    assert bank.raw.shape == (2 * 3, 2, 3, 3) and len(bank) == 6 and bank.patch == 3
    assert torch.equal(bank.raw[4], style[0, :, 1:4, 1:4])  # row 1, column 1 of a 2×3 grid of positions
    assert torch.allclose(bank.normalized.flatten(1).norm(dim=1), torch.ones(6))
    strided = patch_bank(style, patch=2, stride=2)
    assert torch.equal(strided.raw[3], style[0, :, 2:4, 2:4])  # grid rows 0, 2 × columns 0, 2


def test_nearest_patches_equals_brute_force_at_any_chunk_size():
    style, features = rand_map(3, 6, 5, seed=1), rand_map(3, 5, 7, seed=2)
    bank = patch_bank(style, patch=3)
    expected = brute_force(features, bank)
    for chunk in (1, 3, len(bank), 100):
        matches = nearest_patches(features, bank, chunk=chunk)
        assert matches.dtype == torch.int64 and matches.shape == (3, 5)
        assert np.array_equal(matches.numpy(), expected)


def test_ties_go_to_the_lowest_index_at_any_chunk_size():
    style = rand_map(2, 3, 4, seed=3)  # two 3×3 patches: the second is duplicated below
    bank = patch_bank(style, patch=3)
    raw = torch.cat([bank.raw[1:], bank.raw[:1], bank.raw[1:], bank.raw[1:]])  # indices 0, 2, 3 are equal
    norm = raw.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    tied = PatchBank(raw=raw, normalized=raw / norm)
    features = torch.cat([style, style], dim=-1)  # 3×8: windows at x = 1 and x = 5 equal raw[0]
    for chunk in (1, 2, 3, 4):
        matches = nearest_patches(features, tied, chunk=chunk)[0]
        assert matches[1] == 0 and matches[5] == 0
        assert matches[0] == 1 and matches[4] == 1


def test_bank_cap_is_exact_and_seeded():
    style = rand_map(1, 64, 64, seed=4)
    a, b = patch_bank(style, max_patches=100, seed=7), patch_bank(style, max_patches=100, seed=7)
    assert len(a) == 100 and torch.equal(a.raw, b.raw)
    assert not torch.equal(a.raw, patch_bank(style, max_patches=100, seed=8).raw)


def test_loss_by_hand():
    # C=1, 3×3 map, k=2: four windows. The bank holds two 2×2 patches: zeros and ones.
    x = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    raw = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    bank = PatchBank(raw=raw, normalized=raw / 2)
    matches = torch.tensor([[1, 0], [1, 1]])
    # window (0,0) [1,2,0,1] vs ones: 0+1+1+0 = 2;  window (0,1) [2,0,1,0] vs zeros: 4+0+1+0 = 5
    # window (1,0) [0,1,3,0] vs ones: 1+0+4+1 = 6;  window (1,1) [1,0,0,1] vs ones: 0+1+1+0 = 2
    # (2 + 5 + 6 + 2) / (4 windows · 1 channel · 2·2 elements) = 15 / 16
    assert mrf_loss(x, bank, matches).item() == pytest.approx(15 / 16, abs=1e-6)
    assert mrf_loss(x.double(), bank, matches).item() == pytest.approx(15 / 16, abs=1e-12)


def test_loss_equals_the_direct_sum_over_patches():
    features, style = rand_map(3, 7, 6, seed=5, dtype=torch.float64), rand_map(3, 5, 5, seed=6, dtype=torch.float64)
    bank = patch_bank(style, patch=3)
    matches = nearest_patches(features, bank)
    windows = torch.nn.functional.unfold(features, 3)[0].T  # (positions, C·k·k)
    direct = (windows - bank.raw[matches.flatten()].flatten(1)).pow(2).mean()
    assert torch.allclose(mrf_loss(features, bank, matches), direct, rtol=1e-12)


def test_gradcheck_with_matches_held_fixed():
    features, style = rand_map(2, 5, 4, seed=7, dtype=torch.float64), rand_map(2, 4, 4, seed=8, dtype=torch.float64)
    bank = patch_bank(style, patch=2)
    matches = nearest_patches(features, bank)
    x = features.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: mrf_loss(t, bank, matches), (x,))


def test_low_precision_features_give_an_fp32_loss_and_their_own_gradient():
    style, features = rand_map(4, 6, 6, seed=9), rand_map(4, 6, 6, seed=10)
    bank = patch_bank(style.bfloat16())
    x = features.bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    loss = mrf_loss(x, bank, nearest_patches(x, bank))
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == torch.bfloat16


def test_loss_is_zero_on_the_style_itself():
    style = rand_map(3, 6, 7, seed=11).relu()
    bank = patch_bank(style, patch=3)
    matches = nearest_patches(style, bank)
    assert torch.equal(matches.flatten(), torch.arange(len(bank)))
    assert mrf_loss(style, bank, matches).item() < 1e-12


def test_gradient_descent_with_rematching_lowers_the_loss():
    torch.set_num_threads(1)
    # A periodic style can be matched consistently everywhere; from random patches the floor is their disagreement.
    style, start = rand_map(4, 3, 3, seed=12).relu().repeat(1, 1, 3, 3), rand_map(4, 10, 9, seed=13)
    bank = patch_bank(style, patch=3)
    x = start.clone().requires_grad_()
    initial = mrf_loss(start, bank, nearest_patches(start, bank)).item()
    for step in range(40):
        if step % 5 == 0:
            target = mrf_target(bank, nearest_patches(x, bank), x)
            # the gradient is 2·cover·(x − mean)/count: this step moves fully covered pixels half-way to the mean
            optimizer = torch.optim.SGD([x], lr=0.5 * target.count / (2 * 3 * 3))
        optimizer.zero_grad()
        target_loss(x, target).backward()
        optimizer.step()
    final = mrf_loss(x.detach(), bank, nearest_patches(x.detach(), bank)).item()
    assert final < initial / 10


@pytest.mark.parametrize("kwargs, message", [
    ({"patch": 0}, "patch size must be at least 1, got 0"),
    ({"stride": 0}, "patch stride must be at least 1"),
    ({"max_patches": 0}, "max_patches must be at least 1"),
    ({"patch": 5, "layer": "relu5_1"},
     "patch 5 is larger than relu5_1's 4×3 feature map at this size; use a smaller patch or a larger size"),
])
def test_bad_bank_parameters(kwargs, message):
    with pytest.raises(StylizeError, match=message):
        patch_bank(rand_map(2, 3, 4, seed=0), **kwargs)


def test_bad_matching_inputs():
    bank = patch_bank(rand_map(2, 6, 6, seed=0), patch=5)
    with pytest.raises(StylizeError, match="patch 5 is larger than relu5_1's 4×3 feature map"):
        nearest_patches(rand_map(2, 3, 4, seed=1), bank, layer="relu5_1")
    with pytest.raises(StylizeError, match="has 3 channels but the style patches have 2"):
        nearest_patches(rand_map(3, 6, 6, seed=1), bank)
    with pytest.raises(StylizeError, match="chunk must be at least 1"):
        nearest_patches(rand_map(2, 6, 6, seed=1), bank, chunk=0)
    empty = PatchBank(raw=bank.raw[:0], normalized=bank.normalized[:0])
    with pytest.raises(StylizeError, match="the style patch bank is empty"):
        nearest_patches(rand_map(2, 6, 6, seed=1), empty)
    with pytest.raises(StylizeError, match=r"matches have shape \(1, 1\), expected \(3, 3\)"):
        mrf_loss(rand_map(2, 7, 7, seed=1), bank, torch.zeros(1, 1, dtype=torch.int64))
    with pytest.raises(StylizeError, match=r"expected one image's \(1, C, H, W\) feature map"):
        patch_bank(torch.zeros(2, 2, 6, 6))
