"""``precision=auto``: bf16 autocast only where the hardware runs bf16 natively, fp32 elsewhere.

On a CPU without native bf16 (AVX2 laptops, most of them) torch emulates it, and a bf16
matmul runs one to two orders of magnitude slower than fp32; with native bf16 (AVX512_BF16,
AMX) it runs faster than fp32. docs/benchmarks.md has the figures on both kinds.
"""

from pathlib import Path

import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for the instructions
EVALUATION_PRECISIONS = ("auto", "32-true", "bf16-mixed")  # of a trained network's passes


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them; empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning will put an ``accelerator`` setting (auto | cpu | gpu | cuda) on a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def choose_precision(requested: str, accelerator: str) -> tuple[str, str]:
    """The Lightning precision to train with, and why, for ``requested`` (``auto`` or a precision)."""
    if requested != "auto":
        return requested, "as configured"
    native, reason = runs_bf16_natively(accelerator)
    return ("bf16-mixed" if native else "32-true"), reason


def evaluation_precision(requested: str, trained: str | None, accelerator: str) -> tuple[str, str]:
    """The precision to evaluate a checkpoint in, and why: for ``auto``, the one it was
    ``trained`` in where the hardware runs it natively (a batch-norm net trained in bf16 can be
    another function in fp32), fp32 otherwise."""
    if requested != "auto":
        return requested, "as configured"
    if trained is None:
        return "32-true", "the checkpoint does not record its training precision (older than 2026-12-03)"
    if trained != "bf16-mixed":
        return "32-true", f"it trained in {trained}"
    native, reason = runs_bf16_natively(accelerator)
    if native:
        return "bf16-mixed", f"it trained in bf16-mixed and {reason}"
    return "32-true", f"it trained in bf16-mixed, but {reason} (precision=bf16-mixed: as trained, slowly)"


def runs_bf16_natively(accelerator: str) -> tuple[bool, str]:
    """Whether the device an ``accelerator`` setting picks runs bf16 natively, and why."""
    if uses_gpu(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f"the GPU ({torch.cuda.get_device_name()}) supports bf16"
        return False, "the GPU has no bf16 support"
    capability = torch.backends.cpu.get_cpu_capability()
    native = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags())
    if capability.startswith("AVX512") and native:
        return True, f"the CPU runs bf16 natively ({', '.join(native)}; torch uses {capability})"
    return False, f"the CPU has no native bf16 (torch uses {capability}), so bf16 would be emulated"


def machine() -> dict[str, str]:
    """What a speed figure depends on: the CPU capability torch uses, and the GPU if any."""
    found = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name()
    return found


def network_precision(device: torch.device, precision: str) -> torch.autocast:
    """A network's passes under bf16 autocast for ``bf16-mixed`` (as a model trained so was
    validated: a batch-norm net trained in bf16 can differ in fp32); what follows them stays float32."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16-mixed")
