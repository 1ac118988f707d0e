"""What a run records about its machine: the exact keys the compare step relies on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import __version__, environment
from harness.environment import capture_environment

EXPECTED_KEYS = {
    "cpu_model",
    "cpu",
    "physical_cores",
    "logical_cores",
    "ram_bytes",
    "gpus",
    "os",
    "python",
    "libraries",
    "threads",
    "git_sha",
    "harness_version",
}


def test_environment_has_exactly_the_keys_compare_reads() -> None:
    env = capture_environment()
    assert set(env) == EXPECTED_KEYS
    assert env["logical_cores"] >= env["physical_cores"] >= 1
    assert env["ram_bytes"] > 0
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["harness_version"] == __version__
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]


def test_the_cpu_fingerprint_has_every_field() -> None:
    cpu = capture_environment()["cpu"]
    assert set(cpu) == {
        "vendor",
        "family",
        "model",
        "stepping",
        "isa",
        "virtualized",
        "caches",
        "threads_per_core",
        "hypervisor",
        "governor",
        "onnxruntime",
    }
    assert cpu["isa"] is None or set(cpu["isa"]) <= environment.ISA_FEATURES
    assert cpu["isa"] is None or cpu["isa"] == sorted(cpu["isa"])
    assert cpu["onnxruntime"] is None or "CPUExecutionProvider" in cpu["onnxruntime"]["providers"]


def test_library_versions_come_from_metadata_without_importing_tensorflow() -> None:
    sys.modules.pop("tensorflow", None)
    versions = capture_environment()["libraries"]
    assert set(versions) == {
        "tensorflow",
        "keras",
        "onnxruntime",
        "tf2onnx",
        "onnx",
        "numpy",
        "pandas",
        "pluggy",
    }
    import numpy

    assert versions["numpy"] == numpy.__version__
    assert "tensorflow" not in sys.modules


def test_a_missing_library_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        environment, "LIBRARY_DISTRIBUTIONS", {"nothing": ("no-such-distribution-xyz",)}
    )
    assert environment.library_versions() == {"nothing": None}


def test_thread_settings_record_set_and_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    threads = capture_environment()["threads"]
    assert threads["OMP_NUM_THREADS"] == "3"
    assert threads["TF_NUM_INTRAOP_THREADS"] is None


def test_gpus_are_parsed_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {
        "--query-gpu=name,driver_version": "NVIDIA H100 80GB HBM3, 550.54.15\n",
        "": "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |\n",
    }

    def fake_run(command: list[str]) -> str:
        return outputs[command[1] if len(command) > 1 else ""]

    monkeypatch.setattr(environment.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(environment, "_run", fake_run)
    assert environment.nvidia_gpus() == [
        {"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "cuda": "12.4"}
    ]


def test_no_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    assert environment.nvidia_gpus() == []


def test_git_sha_is_none_outside_a_checkout(tmp_path: Path) -> None:
    assert environment.git_sha(tmp_path) is None


def test_git_sha_of_a_checkout_is_a_full_hash() -> None:
    sha = environment.git_sha(Path(environment.__file__).parent)
    if sha is None:
        pytest.skip("the harness is not installed from a git checkout here")
    assert len(sha) == 40 and int(sha, 16) >= 0


_X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 "
    "movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a "
    "misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust "
    "bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 clzero "
    "xsaveerptr arat npt nrip_save umip rdpid"
)
_AVX512_FLAGS = (
    " avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi "
    "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq"
)


def x86_cpuinfo(family: int, model: int, flags: str) -> str:
    """Two processors of /proc/cpuinfo as an AMD EPYC virtual machine writes them."""
    block = (
        "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\n"
        "model\t\t: {model}\nmodel name\t: AMD EPYC\nstepping\t: 0\n"
        "cache size\t: 512 KB\nflags\t\t: {flags}\nbogomips\t: 4899.99\n\n"
    )
    return "".join(block.format(n=n, family=family, model=model, flags=flags) for n in (0, 1))


AVX2_EPYC = x86_cpuinfo(23, 49, _X86_FLAGS)
AVX512_EPYC = x86_cpuinfo(25, 17, _X86_FLAGS + _AVX512_FLAGS)
NEOVERSE_V1 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs \
paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1

processor\t: 1
Features\t: fp
"""


def test_an_avx2_only_epyc_is_told_from_an_avx512_one() -> None:
    rome = environment.parse_cpuinfo(AVX2_EPYC)
    assert rome == {
        "vendor": "AuthenticAMD",
        "family": 23,
        "model": 49,
        "stepping": 0,
        "isa": ["avx", "avx2", "f16c", "fma", "sse4_2"],
        "virtualized": True,
    }
    genoa = environment.parse_cpuinfo(AVX512_EPYC)
    assert (genoa["family"], genoa["model"]) == (25, 17)
    assert set(genoa["isa"]) - set(rome["isa"]) == {
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
    }


def test_an_arm_cpu_reports_its_implementer_part_and_sve() -> None:
    assert environment.parse_cpuinfo(NEOVERSE_V1) == {
        "vendor": "ARM",
        "family": 8,
        "model": "0xd40",
        "stepping": "r1p1",
        "isa": ["asimd", "bf16", "i8mm", "sve"],
        "virtualized": None,
    }


def test_unreadable_cpuinfo_is_all_unknown() -> None:
    assert environment.parse_cpuinfo("garbage without fields") == {
        "vendor": None,
        "family": None,
        "model": None,
        "stepping": None,
        "isa": None,
        "virtualized": None,
    }


def test_macos_sysctl_names_map_onto_the_linux_ones() -> None:
    apple = environment.parse_sysctl(
        "hw.optional.arm64: 1\nhw.optional.neon: 1\nhw.optional.arm.FEAT_BF16: 1\n"
        "hw.optional.arm.FEAT_I8MM: 0\nhw.cpufamily: -634136515\nhw.l1dcachesize: 65536\n"
        "hw.l2cachesize: 4194304\nmachdep.cpu.brand_string: Apple M2\nkern.hv_vmm_present: 0\n"
    )
    assert apple["vendor"] == "Apple" and apple["family"] == -634136515
    assert apple["isa"] == ["asimd", "bf16"]
    assert apple["caches"] == {"L1d": 65536, "L2": 4194304, "L3": None}
    assert apple["virtualized"] is False
    intel = environment.parse_sysctl(
        "machdep.cpu.vendor: GenuineIntel\nmachdep.cpu.family: 6\nmachdep.cpu.model: 158\n"
        "machdep.cpu.stepping: 10\nmachdep.cpu.features: FPU SSE3 FMA SSE4.1 SSE4.2 AVX1.0 F16C\n"
        "machdep.cpu.leaf7_features: SMEP BMI1 AVX2 BMI2\nhw.optional.avx512f: 0\n"
    )
    assert (intel["vendor"], intel["family"], intel["model"], intel["stepping"]) == (
        "GenuineIntel",
        6,
        158,
        10,
    )
    assert intel["isa"] == ["avx", "avx2", "f16c", "fma", "sse4_2"]
    assert intel["virtualized"] is None


def test_cache_sizes_come_from_sysfs(tmp_path: Path) -> None:
    for index, (level, kind, size) in enumerate(
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K")]
    ):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, text in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(text + "\n")
    assert environment.cache_sizes(tmp_path) == {"L1d": 48 * 1024, "L2": 2 * 2**20, "L3": None}
    assert environment.cache_sizes(tmp_path / "missing") == {"L1d": None, "L2": None, "L3": None}
    assert environment.parse_size("32M") == 32 * 2**20
    assert environment.parse_size("about 1 MB") is None


def test_the_hypervisor_is_named_only_on_a_virtual_machine(tmp_path: Path) -> None:
    dmi = tmp_path / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("QEMU\n")
    (dmi / "product_name").write_text("Standard PC (Q35 + ICH9, 2009)\n")
    assert environment.hypervisor_name(tmp_path, True) == "QEMU Standard PC (Q35 + ICH9, 2009)"
    assert environment.hypervisor_name(tmp_path, False) is None  # the board, not a hypervisor
    (tmp_path / "hypervisor").mkdir()
    (tmp_path / "hypervisor" / "type").write_text("xen\n")
    assert environment.hypervisor_name(tmp_path, None) == "xen"
    assert environment.hypervisor_name(tmp_path / "nowhere", True) is None


def test_a_machine_that_says_nothing_gives_nones_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(environment, "_read", lambda path: None)
    monkeypatch.setattr(environment.platform, "system", lambda: "Linux")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    cpu = environment.cpu_fingerprint()
    assert cpu["isa"] is None and cpu["vendor"] is None and cpu["governor"] is None
    assert cpu["caches"] == {"L1d": None, "L2": None, "L3": None}
    assert cpu["onnxruntime"] is None
