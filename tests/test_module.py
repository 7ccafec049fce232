"""The LightningModule's public API and loss bookkeeping on a tiny network."""

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import quiet_trainer, random_images, uint8_loader
from vae.module import to_unit_interval


def test_loss_is_recon_plus_beta_times_kl_per_image(make_vae):
    model = make_vae(beta=0.5)
    terms = model.losses(torch.rand(5, 1, 4, 4))
    assert all(value.shape == (5,) for value in terms.values())
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["kl"])
    assert (terms["kl"] >= 0).all() and (terms["recon"] > 0).all()


def test_sample_decode_and_reconstruct_give_images_in_the_unit_interval(make_vae):
    model = make_vae().eval()
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 4, 4)
    assert samples.min() >= 0 and samples.max() <= 1
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))  # posterior means, no noise


def test_a_training_step_sends_gradients_to_both_encoder_heads(make_vae):
    model = make_vae()
    batch = (torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8), torch.zeros(8))
    model.losses(to_unit_interval(batch[0]))["loss"].mean().backward()
    for name, parameter in model.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_uint8_pixels_become_unit_floats():
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_unit_interval(pixels), torch.tensor([0.0, 0.2, 1.0]))


@pytest.mark.parametrize(
    "change", [{"recon": "l1"}, {"recon_reduction": "max"}, {"kl_reduction": "max"}, {"binarize": "always"}]
)
def test_unknown_objective_switches_are_rejected(make_vae, change):
    with pytest.raises(ValueError, match=f"objective.{next(iter(change))} must be one of"):
        make_vae(**change)


def test_an_autoencoder_has_no_sampler_no_logvar_head_and_no_kl(make_vae):
    model = make_vae(variational=False)
    assert model.sampler is None and model.encoder.logvar is None
    terms = model.losses(torch.rand(3, 1, 4, 4))
    assert set(terms) == {"recon", "loss"}
    torch.testing.assert_close(terms["loss"], terms["recon"])
    x = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(model.losses(x)["loss"], model.losses(x)["loss"])  # deterministic


def test_mean_reductions_divide_the_sums_by_pixels_and_latent_dims(make_vae):
    summed = make_vae(latent_dim=4)
    averaged = make_vae(latent_dim=4, recon_reduction="mean", kl_reduction="mean")
    averaged.load_state_dict(summed.state_dict())
    x = torch.rand(5, 1, 4, 4)
    torch.manual_seed(0)
    total = summed.losses(x)
    torch.manual_seed(0)
    mean = averaged.losses(x)
    torch.testing.assert_close(mean["recon"], total["recon"] / 16)
    torch.testing.assert_close(mean["kl"], total["kl"] / 4)


def test_eps_std_scales_the_sampling_noise(make_vae):
    model = make_vae(eps_std=0.1)
    mu, logvar = torch.zeros(100_000, 1), torch.zeros(100_000, 1)
    assert abs(model.sampler(mu, logvar).std() - 0.1) < 0.002


def test_dynamic_binarization_draws_bernoulli_pixels(make_vae):
    model = make_vae(binarize="dynamic")
    pixels = torch.full((2000, 1, 4, 4), 64, dtype=torch.uint8)  # p = 64/255
    x = model.prepare(pixels)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert abs(x.mean() - 64 / 255) < 0.01
    torch.testing.assert_close(make_vae().prepare(pixels).unique(), torch.tensor([64 / 255]))


CONV = {
    "family": "conv",
    "encoder_channels": [4, 8],
    "encoder_strides": [2, 2],
    "encoder_dense": [],
    "decoder_channels": [8, 4],
    "decoder_strides": [2, 2],
    "output_stride": 1,
    "kernel_size": 3,
    "batch_norm": True,
    "activation": "leaky_relu",
}


def test_channels_last_changes_memory_layout_not_results(make_vae):
    plain = make_vae((1, 8, 8), 2, model=CONV, variational=False)
    fast = make_vae((1, 8, 8), 2, model=CONV, variational=False)
    fast.load_state_dict(plain.state_dict())
    fast.use_fast_paths(channels_last=True, compile=False)
    pixels = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert fast.prepare(pixels).is_contiguous(memory_format=torch.channels_last)
    assert fast.encoder.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        fast.losses(fast.prepare(pixels))["loss"], plain.losses(plain.prepare(pixels))["loss"]
    )


def test_channels_last_leaves_a_network_without_convolutions_alone(make_vae):
    model = make_vae()
    model.use_fast_paths(channels_last=True, compile=False)
    assert model.memory_format == torch.contiguous_format


def test_compiled_losses_match_eager_ones(make_vae, tmp_path, monkeypatch):
    # A fresh kernel cache: one compiled under another ATEN_CPU_CAPABILITY gives wrong values.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    eager = make_vae(variational=False)
    compiled = make_vae(variational=False)
    compiled.load_state_dict(eager.state_dict())
    compiled.use_fast_paths(channels_last=False, compile=True)
    x = torch.rand(5, 1, 4, 4)
    torch.testing.assert_close(compiled.losses(x)["loss"], eager.losses(x)["loss"], rtol=1e-4, atol=1e-4)


def test_logged_epoch_losses_are_means_over_images_not_over_batches(make_vae):
    """Batches of 3 and 1 images: the mean of batch means would weigh the lone image 3x."""
    model = make_vae(variational=False)  # deterministic, so the hand computation can match
    images = random_images(4)
    images[3] = 255  # an image unlike the others, so the two weightings differ
    trainer = quiet_trainer()
    trainer.test(model, uint8_loader(images, batch_size=3), verbose=False)
    with torch.no_grad():
        per_image = model.losses(to_unit_interval(images))["recon"]
    batch_means = (per_image[:3].mean() + per_image[3]) / 2
    assert abs(per_image.mean() - batch_means) > 1e-3
    torch.testing.assert_close(trainer.callback_metrics["test/recon"], per_image.mean())
    torch.testing.assert_close(trainer.callback_metrics["test/loss"], per_image.mean())


# Warm-up over 2 epochs of 4 batches: step s weighs the KL by (s + 1) / 8, or (s + 1) / 4 with 2
# batches a step (accumulating halves the steps, not the warm-up's epochs), so epoch 0 ends at 1/2
# and epoch 1 at 1. Cyclical, 4 epochs of 4 steps in 2 cycles of 8: each epoch's last step (3, 7,
# 11, 15) sits at 3/8 and 7/8 of its cycle, a rise over the first half: 0.75, 1, 0.75, 1 of beta.
@pytest.mark.parametrize(
    ("changes", "epochs", "accumulate", "expected"),
    [
        ({"kl_warmup_epochs": 2}, 2, 1, [0.5, 1.0]),
        ({"kl_warmup_epochs": 2}, 2, 2, [0.5, 1.0]),
        ({"kl_cycles": 2, "beta": 2.0}, 4, 1, [1.5, 2.0, 1.5, 2.0]),
    ],
    ids=["warm-up", "warm-up, 2 batches a step", "2 cycles, beta 2"],
)
def test_the_logged_kl_weight_is_that_of_each_epochs_last_step(
    make_vae, changes, epochs, accumulate, expected
):
    logged = []

    class ReadEpochLogs(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if "train/beta" in trainer.callback_metrics:
                logged.append(float(trainer.callback_metrics["train/beta"]))

    trainer = quiet_trainer(
        max_epochs=epochs,
        enable_checkpointing=False,
        callbacks=[ReadEpochLogs()],
        accumulate_grad_batches=accumulate,
    )
    trainer.fit(make_vae(**changes), uint8_loader(random_images(8), batch_size=2))
    logged.append(float(trainer.callback_metrics["train/beta"]))
    assert logged == expected


def test_free_bits_changes_the_training_loss_only_and_reports_the_true_kl(make_vae):
    model = make_vae(latent_dim=3, free_bits=50.0)  # far above any dimension's KL at initialisation
    x = torch.rand(4, 1, 4, 4)
    torch.manual_seed(0)
    train = model.train().losses(x)
    torch.manual_seed(0)
    evaluation = model.eval().losses(x)
    torch.testing.assert_close(train["kl"], evaluation["kl"])
    torch.testing.assert_close(train["loss"], train["recon"] + 3 * 50.0)  # every dim floored
    torch.testing.assert_close(evaluation["loss"], evaluation["recon"] + evaluation["kl"])


def test_two_kl_schedules_at_once_are_refused(make_vae):
    with pytest.raises(ValueError, match="two schedules"):
        make_vae(kl_warmup_epochs=2, kl_cycles=3)


@pytest.mark.parametrize("recon", ["bce", "mse"])
def test_loss_terms_are_float32_when_the_layers_run_in_bfloat16(make_vae, recon: str):
    model = make_vae(latent_dim=4, recon=recon)
    x = torch.rand(3, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, _ = model.encode(x)
        terms = model.losses(x)
    assert mu.dtype == torch.bfloat16  # the layers did run in bf16
    assert {name: value.dtype for name, value in terms.items()} == dict.fromkeys(terms, torch.float32)


def test_the_optimizer_is_adam_with_the_configured_learning_rate_and_epsilon(make_vae):
    model = make_vae(lr=5e-4, adam_eps=1e-7)
    model.trainer = quiet_trainer()
    (group,) = model.configure_optimizers().param_groups
    assert (group["lr"], group["eps"]) == (5e-4, 1e-7)


class LearningRates(pl.Callback):
    """The learning rate each optimizer step ran with."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_cosine_schedule_falls_from_lr_to_zero_over_the_run_per_step(make_vae, schedule: str):
    rates = LearningRates()
    trainer = quiet_trainer(max_epochs=2, enable_checkpointing=False, callbacks=[rates])
    trainer.fit(make_vae(lr=1e-3, schedule=schedule), uint8_loader(random_images(16), batch_size=4))
    if schedule == "constant":
        assert rates.rates == [1e-3] * 8
        return
    # 8 steps: lr (1 + cos(pi t / 8)) / 2, by hand at t = 0, 2, 4, 6: 1, 0.85355, 0.5, 0.14645 (x 1e-3)
    assert rates.rates[::2] == pytest.approx([1e-3, 0.85355e-3, 0.5e-3, 0.14645e-3], rel=1e-4)
    assert all(later < earlier for earlier, later in zip(rates.rates, rates.rates[1:], strict=False))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # after the last step


class GradientNorms(pl.Callback):
    """The gradients' total norm as the optimizer used them: read before the next step zeroes them."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad.float() for p in pl_module.parameters() if p.grad is not None]
        if grads:
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_clipping_bounds_the_gradients_at_every_precision(make_vae, precision: str, clip):
    torch.manual_seed(0)
    norms = GradientNorms()
    trainer = quiet_trainer(
        max_epochs=1,
        enable_checkpointing=False,
        precision=precision,
        gradient_clip_val=clip,
        callbacks=[norms],
    )
    trainer.fit(make_vae(), uint8_loader(random_images(12), batch_size=4))
    assert len(norms.norms) == 2  # before the second and third steps
    if clip is None:
        assert min(norms.norms) > 1.0  # BCE summed over pixels: gradients well above the clip value
    else:
        assert max(norms.norms) <= clip * 1.01
