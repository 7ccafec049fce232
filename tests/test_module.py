"""The LightningModule's public API and loss bookkeeping on a tiny network."""

import pytest
import torch

from vae.module import VAE, to_unit_interval

MLP = {"family": "mlp", "hidden": [16], "activation": "relu"}


def tiny_vae(latent_dim: int = 2, beta: float = 1.0, recon: str = "bce") -> VAE:
    return VAE(
        image_shape=(1, 4, 4),
        latent_dim=latent_dim,
        model=MLP,
        recon=recon,
        mse_scale=1000.0,
        beta=beta,
        lr=1e-3,
    )


def test_loss_is_recon_plus_beta_times_kl_per_image():
    model = tiny_vae(beta=0.5)
    terms = model.losses(torch.rand(5, 1, 4, 4))
    assert all(value.shape == (5,) for value in terms.values())
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["kl"])
    assert (terms["kl"] >= 0).all() and (terms["recon"] > 0).all()


def test_sample_decode_and_reconstruct_give_images_in_the_unit_interval():
    model = tiny_vae().eval()
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 4, 4)
    assert samples.min() >= 0 and samples.max() <= 1
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))  # posterior means, no noise


def test_a_training_step_sends_gradients_to_both_encoder_heads():
    model = tiny_vae()
    batch = (torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8), torch.zeros(8))
    model.losses(to_unit_interval(batch[0]))["loss"].mean().backward()
    for name, parameter in model.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_uint8_pixels_become_unit_floats():
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_unit_interval(pixels), torch.tensor([0.0, 0.2, 1.0]))


def test_unknown_reconstruction_term_is_rejected():
    with pytest.raises(ValueError, match="unknown recon"):
        tiny_vae(recon="l1")
