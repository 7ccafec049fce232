VENV   ?= .venv
PYTHON := $(VENV)/bin/python
ARGS   ?=

.PHONY: install test test-all train tensorboard lint bench gallery clean

install: ## create .venv and install the package with its dev tools
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e ".[dev]"

test: ## the fast tier: unit tests, a few minutes at most on 2 CPU cores
	$(PYTHON) -m pytest -m "not slow" $(ARGS)

test-all: ## both tiers: also the end-to-end runs on the real data in ../shared/data (copied into ./data)
	$(PYTHON) -m pytest $(ARGS)

train: ## train the default VAE; pass overrides as ARGS="dataset=mnist latent_dim=16"
	$(PYTHON) -m vae.train $(ARGS)

tensorboard: ## open the dashboards of every run under outputs/
	$(VENV)/bin/tensorboard --logdir outputs

lint: ## ruff on the package, the tests and the timing harness (bench/studies/ holds one-off studies, not linted)
	$(VENV)/bin/ruff check --extend-exclude bench/studies vae tests bench
	$(VENV)/bin/ruff format --check --extend-exclude bench/studies vae tests bench

bench: ## images/second and epoch time for each preset next to a plain baseline
	$(PYTHON) -m bench.speed $(ARGS)

gallery: ## regenerate the README's pictures in docs/images/ from short runs on ../shared/data (about ten minutes)
	$(PYTHON) docs/gallery.py

clean:
	rm -rf outputs/*/ multirun .pytest_cache .ruff_cache bench/results
