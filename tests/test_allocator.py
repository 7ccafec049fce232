"""The commands' allocator setting: what it asks glibc for, and when it leaves glibc alone."""

import ctypes

import pytest

from vae import allocator


class FakeLibc:
    """Records mallopt calls; ``accepts`` is what glibc's mallopt returns (1: set, 0: refused)."""

    def __init__(self, accepts: int) -> None:
        self.accepts = accepts
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.accepts


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch):
    for name in [name for name in allocator.os.environ if name.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)

    def install(accepts: int = 1) -> FakeLibc:
        fake = FakeLibc(accepts)
        monkeypatch.setattr(ctypes, "CDLL", lambda name: fake if name == "libc.so.6" else None)
        return fake

    return install


def test_it_fixes_the_mmap_then_the_trim_threshold(libc):
    fake = libc()
    assert allocator.keep_freed_memory() is True
    # M_MMAP_THRESHOLD (-3) at 32 MiB, then M_TRIM_THRESHOLD (-1) at 512 MiB, as malloc.h numbers them.
    assert fake.calls == [(-3, 32 * 2**20), (-1, 512 * 2**20)]


def test_a_refused_first_setting_sets_nothing_more(libc):
    fake = libc(accepts=0)
    assert allocator.keep_freed_memory() is False
    assert fake.calls == [(-3, 32 * 2**20)]


@pytest.mark.parametrize("variable", ["MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"])
def test_a_users_own_allocator_settings_win(libc, monkeypatch, variable: str):
    fake = libc()
    monkeypatch.setenv(variable, "2")
    assert allocator.keep_freed_memory() is False
    assert fake.calls == []


def test_without_glibc_nothing_happens(monkeypatch):
    def missing(name: str):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    for name in [name for name in allocator.os.environ if name.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert allocator.keep_freed_memory() is False
