"""Batched augmentation: each operation does what it says, reproducibly, per image."""
import torch

from ferkit.transforms.augment import AugmentConfig, augment, mix_batch, random_affine, random_erase

NONE = AugmentConfig(hflip=0, rotate=0, shift=0, zoom=0, shear=0, erase=0)


def batch(n=8, size=16):
    return torch.arange(n * size * size, dtype=torch.float32).view(n, 1, size, size) % 251


def test_identity_config_leaves_images_unchanged():
    x = batch()
    assert torch.equal(augment(x, NONE, torch.Generator().manual_seed(0)), x)


def test_identity_affine_resamples_exactly():
    x = batch()
    cfg = AugmentConfig(hflip=0, rotate=0, shift=0, zoom=0, shear=0)
    out = random_affine(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-3)


def test_flip_probability_one_mirrors_every_image():
    x = batch()
    cfg = AugmentConfig(hflip=1.0, rotate=0, shift=0, zoom=0, shear=0)
    out = random_affine(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.flip(-1), atol=1e-3)


def test_each_image_gets_its_own_jitter():
    x = batch(4).new_zeros(4, 1, 16, 16)
    x[..., 6:10, 6:10] = 255  # the same image four times
    out = random_affine(x, AugmentConfig(hflip=0, rotate=30, shift=0.2, zoom=0.2), torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten().round().tolist()) for o in out}) == 4


def test_same_seed_same_augmentation():
    x = batch()
    cfg = AugmentConfig(erase=0.5, shear=10)
    a = augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment(x, cfg, torch.Generator().manual_seed(3))
    c = augment(x, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_erase_fills_one_rectangle_within_the_area_range():
    x = torch.full((64, 1, 32, 32), 100.0)
    out = random_erase(x, p=1.0, area=(0.05, 0.2), fill=-1.0, gen=torch.Generator().manual_seed(0))
    erased = (out == -1.0)[:, 0]
    share = erased.float().mean((1, 2))
    assert (share > 0).all() and (share <= 0.25).all()
    for mask in erased:  # a filled axis-aligned rectangle: its bounding box is fully erased
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()


def test_random_erase_probability_zero_is_a_no_op():
    x = batch()
    assert torch.equal(random_erase(x, 0.0, (0.1, 0.2), 0.0, torch.Generator().manual_seed(0)), x)


def test_mix_batch_keeps_targets_a_distribution_and_mixes_pixels():
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(6)])
    targets = torch.eye(6)
    for kind in ({"mixup": 0.4, "cutmix": 0.0}, {"mixup": 0.0, "cutmix": 1.0}):
        mixed, soft = mix_batch(x, targets, prob=1.0, gen=torch.Generator().manual_seed(2), **kind)
        assert torch.allclose(soft.sum(1), torch.ones(6))
        assert not torch.equal(mixed, x)
        assert (soft.max(1).values < 1).any()


def test_mix_batch_off_returns_inputs():
    x, t = batch(4), torch.eye(4)
    assert mix_batch(x, t, 0.0, 0.0, 1.0, torch.Generator())[0] is x
