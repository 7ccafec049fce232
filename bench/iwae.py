"""IWAE evaluation's cost: decoding k = 1000 posterior draws per test image.

With k draws per image the decoder runs k times as often as in training, so evaluation is
only as fast as decoder forward passes are. The baseline decodes one draw per call for a
batch of 128 test images (k calls of 128 latents); the other rows decode more latents per
call, in bf16, and through ``vae.evaluation.per_image_measures`` itself (encoder, draws,
decoder and log-densities, chunked as ``vae.evaluate`` chunks them), which shows whether
evaluation is bound by the decoder.
"""

import time

import torch

from bench.timing import Step
from bench.workloads import BATCH_SIZE, Workload
from vae.evaluation import per_image_measures

K = 1000
LATENTS_PER_STEP = 2048
LARGE_CALL = 2048
EVALUATE_IMAGES = 64  # conf/evaluate.yaml's batch_size
EVALUATE_DRAWS = 128  # with 64 images, one call of vae.evaluation's 8192-latent chunks
TEST_IMAGES = 10_000  # the MNIST-family test split


class Decoding:
    """Decoder forward passes in inference mode over ``LATENTS_PER_STEP`` latents, ``per_call`` at a time."""

    def __init__(self, workload: Workload, per_call: int, channels_last: bool, bf16: bool) -> None:
        torch.manual_seed(0)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.decoder = workload.model().eval().decoder.to(memory_format=memory_format)
        self.latents = torch.randn(LATENTS_PER_STEP, workload.config.latent_dim).split(per_call)
        self.bf16 = bf16

    def run(self, steps: int) -> list[Step]:
        return [self.step() for _ in range(steps)]

    @torch.inference_mode()
    def step(self) -> Step:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for z in self.latents:
                self.decoder(z)
        return Step(LATENTS_PER_STEP, 0.0, time.perf_counter() - started)


class Evaluation:
    """``vae.evaluation.per_image_measures`` on ``EVALUATE_IMAGES`` images, ``EVALUATE_DRAWS`` draws each, fp32."""

    def __init__(self, workload: Workload) -> None:
        torch.manual_seed(0)
        self.model = workload.model().eval()
        self.images = workload.fast_set.images[:EVALUATE_IMAGES]

    def run(self, steps: int) -> list[Step]:
        return [self.step() for _ in range(steps)]

    def step(self) -> Step:
        started = time.perf_counter()
        per_image_measures(self.model, self.images, EVALUATE_DRAWS, EVALUATE_IMAGES, seed=0)
        return Step(EVALUATE_IMAGES * EVALUATE_DRAWS, 0.0, time.perf_counter() - started)


def decoding_tasks(workload: Workload, evaluation: bool) -> dict[str, Decoding | Evaluation]:
    """Small and large decoder calls in fp32 and in channels_last + bf16, then (``evaluation``) the project's."""
    small, large = f"{BATCH_SIZE} latents per call", f"{LARGE_CALL} latents per call"
    tasks: dict[str, Decoding | Evaluation] = {
        f"baseline: {small} (one draw of a {BATCH_SIZE}-image batch), fp32": Decoding(
            workload, BATCH_SIZE, False, False
        ),
        f"{large}, fp32": Decoding(workload, LARGE_CALL, False, False),
        f"{small}, channels_last + bf16": Decoding(workload, BATCH_SIZE, True, True),
        f"{large}, channels_last + bf16": Decoding(workload, LARGE_CALL, True, True),
    }
    if evaluation:
        name = f"`vae.evaluation.per_image_measures`, {EVALUATE_IMAGES} images x {EVALUATE_DRAWS} draws"
        tasks[f"{name} (its own chunking), fp32"] = Evaluation(workload)
    return tasks
