# Shipped inside the wheel as the package vae.conf (pyproject.toml maps conf/ to it), which
# Hydra reads as pkg://vae.conf: an editable install and an installed wheel read these files.
