"""vae: train, evaluate and visualise Variational Autoencoders on images."""
