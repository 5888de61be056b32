"""The CPU set-up and the atomic save."""
import os

import pytest

from utils import atomic_save, fast_mkl_on_amd, usable_cores


@pytest.mark.parametrize("vendor,expected", [("AuthenticAMD", "5"), ("GenuineIntel", None)])
def test_fast_mkl_only_on_amd(tmp_path, monkeypatch, vendor, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\n")
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    fast_mkl_on_amd(str(cpuinfo))
    assert os.environ.get("MKL_DEBUG_CPU_TYPE") == expected


def test_fast_mkl_keeps_the_users_choice_and_needs_no_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\n")
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")
    fast_mkl_on_amd(str(cpuinfo))
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "4"
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE")
    fast_mkl_on_amd(str(tmp_path / "missing"))
    assert "MKL_DEBUG_CPU_TYPE" not in os.environ


def test_usable_cores():
    assert 1 <= usable_cores() <= os.cpu_count()


def test_atomic_save_leaves_no_temporary_file(tmp_path):
    import paddle

    path = tmp_path / "state.pdparams"
    atomic_save({"a": paddle.ones([2])}, str(path))
    assert os.listdir(tmp_path) == ["state.pdparams"]
    assert paddle.load(str(path))["a"].numpy().tolist() == [1.0, 1.0]


def test_keep_freed_memory_applies_on_glibc():
    import platform

    from utils import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True
