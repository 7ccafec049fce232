"""precision=auto picks bf16 only where the hardware runs it natively."""

from pathlib import Path

import pytest
import torch

from vae import precision
from vae.precision import choose_precision, cpu_flags, evaluation_precision

AVX512_BF16_FLAGS = "fpu vme sse2 avx2 avx512f avx512bw avx512_bf16"


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Sets the CPU capability torch reports and the flags /proc/cpuinfo lists; no GPU."""

    def make(capability: str, flags: str) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(precision, "cpu_flags", lambda: set(flags.split()))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return make


@pytest.mark.parametrize(
    ("capability", "flags", "expected"),
    [
        ("AVX512", AVX512_BF16_FLAGS, "bf16-mixed"),
        ("AVX512", "avx2 avx512f amx_bf16 amx_tile", "bf16-mixed"),
        ("AVX512", "avx2 avx512f avx512bw", "32-true"),  # AVX-512 without bf16 (e.g. Skylake-X)
        ("AVX2", "avx2 fma", "32-true"),
        ("AVX2", AVX512_BF16_FLAGS, "32-true"),  # torch limited to AVX2 (ATEN_CPU_CAPABILITY=avx2)
        ("DEFAULT", "", "32-true"),  # no /proc/cpuinfo (macOS) or an unknown CPU
    ],
)
def test_auto_is_bf16_only_on_cpus_with_native_bf16(cpu, capability: str, flags: str, expected: str):
    cpu(capability, flags)
    chosen, reason = choose_precision("auto", "cpu")
    assert chosen == expected
    assert capability in reason
    assert choose_precision("auto", "auto")[0] == expected  # no GPU: auto means this CPU


def test_a_precision_asked_for_is_kept_whatever_the_machine(cpu):
    cpu("AVX2", "avx2")
    assert choose_precision("bf16-mixed", "cpu") == ("bf16-mixed", "as configured")
    cpu("AVX512", AVX512_BF16_FLAGS)
    assert choose_precision("32-true", "cpu") == ("32-true", "as configured")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch, bf16: bool, expected: str):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *device: "Test GPU")
    assert choose_precision("auto", "gpu")[0] == expected
    assert choose_precision("auto", "auto")[0] == expected


def test_cpu_flags_are_read_from_the_flags_line(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("capability", "flags", "expected"),
    [("AVX512", AVX512_BF16_FLAGS, "bf16-mixed"), ("AVX2", "avx2 fma", "32-true")],
)
def test_a_bf16_trained_checkpoint_is_evaluated_in_bf16_only_where_it_runs_natively(
    cpu, capability: str, flags: str, expected: str
):
    cpu(capability, flags)
    chosen, reason = evaluation_precision("auto", "bf16-mixed", "cpu")
    assert chosen == expected and capability in reason
    assert evaluation_precision("auto", "32-true", "cpu") == ("32-true", "it trained in 32-true")
    assert evaluation_precision("bf16-mixed", "32-true", "cpu") == ("bf16-mixed", "as configured")


def test_a_checkpoint_without_its_precision_is_evaluated_in_fp32_and_says_why(cpu):
    cpu("AVX512", AVX512_BF16_FLAGS)
    chosen, reason = evaluation_precision("auto", None, "cpu")
    assert chosen == "32-true" and "does not record" in reason
