"""The CPU kernels a run uses: pinned to AVX2 on 2 threads by default, refused when it is too late to pin, and
recorded honestly. Each case runs in a fresh Python, since every library reads its choice once per process."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

X86_AVX2 = platform.machine().lower() in ("x86_64", "amd64") and (
    not Path("/proc/cpuinfo").exists() or " avx2" in Path("/proc/cpuinfo").read_text())
needs_avx2 = pytest.mark.skipif(not X86_AVX2, reason="pinning to AVX2 needs an x86-64 CPU with AVX2")


def fresh_python(code, env=None):
    """Run code in a new interpreter beside utils.py; return (exit code, stdout, stderr)."""
    import os
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "ONEDNN_", "MKL_", "OMP_"))}
    proc = subprocess.run([sys.executable, "-c", "import json, torch, utils\n" + code], cwd=ROOT, text=True,
                          capture_output=True, env={**environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


REPORT = 'print("RESULT", json.dumps({**KERNELS, "hardware": utils.hardware(torch.device("cpu"))}))\n'


def result(stdout):
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])


@needs_avx2
def test_the_pin_gives_avx2_kernels_on_two_threads_and_says_so():
    code, out, err = fresh_python("import os\ntorch.set_num_threads(1)\n"
                                  "KERNELS = utils.choose_kernels(torch.device('cpu'))\n"
                                  "KERNELS['env'] = {k: os.environ.get(k) for k in utils.PIN_ENV}\n" + REPORT)
    assert code == 0, err
    k = result(out)
    assert k["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert k["aten"] == "AVX2" and k["threads"] == 2 and k["pinned"] is True
    assert k["onednn"] in ("Intel AVX2", None) and k["mkl"] in ("AVX2", None)  # None: torch built without it
    assert "(AVX2, pinned)" in k["hardware"] and "2 torch threads" in k["hardware"]


@needs_avx2
def test_without_the_pin_the_cpu_runs_its_own_kernels_and_the_record_says_unpinned():
    code, out, err = fresh_python("import os\nKERNELS = utils.choose_kernels(torch.device('cpu'), pin_cpu=False)\n"
                                  "assert 'ATEN_CPU_CAPABILITY' not in os.environ\n" + REPORT)
    assert code == 0, err
    k = result(out)
    assert k["pinned"] is False and "pinned" not in k["hardware"]
    assert k["aten"] == k["hardware"].split("(")[-1].split(")")[0]  # the capability torch really used


@needs_avx2
def test_too_late_to_pin_atens_kernels_stops_the_run():
    # ATen chose its (here: plain) kernels at the first operation; the pin cannot change them any more
    code, _, err = fresh_python("torch.ones(3).add(1)\nutils.pin_kernels()", env={"ATEN_CPU_CAPABILITY": "default"})
    assert code != 0 and "RuntimeError: pin_kernels: the kernels are {'aten': 'DEFAULT'" in err
    assert "Restart the kernel" in err and "pin_cpu = False" in err


@needs_avx2
@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="this torch has no MKL")
def test_too_late_to_pin_mkl_is_caught_too():
    # MKL chose SSE4.2 at its first matrix product: a half-pinned run would say it was pinned
    code, _, err = fresh_python("torch.ones(64, 64) @ torch.ones(64, 64)\nutils.pin_kernels()",
                                env={"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"})
    assert code != 0 and "'mkl': 'SSE4.2'" in err


@needs_avx2
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_too_late_to_pin_onednn_is_caught():
    code, _, err = fresh_python("x = torch.ones(1, 16, 8, 8).contiguous(memory_format=torch.channels_last)\n"
                                "torch.nn.functional.conv2d(x, torch.ones(16, 16, 3, 3), padding=1)\n"
                                "utils.pin_kernels()", env={"ONEDNN_MAX_CPU_ISA": "SSE41"})
    assert code != 0 and "'onednn': 'Intel SSE4.1'" in err


def test_a_cpu_without_avx2_is_told_and_runs_its_own_kernels():
    code, out, err = fresh_python("import platform\nplatform.machine = lambda: 'arm64'\n"
                                  "KERNELS = utils.choose_kernels(torch.device('cpu'))\n" + REPORT)
    assert code == 0, err
    assert "this arm64 CPU has no AVX2" in out and result(out)["pinned"] is False


def test_the_kernel_probe_draws_no_random_number():
    code, out, err = fresh_python("state = torch.get_rng_state()\nutils.cpu_kernels()\n"
                                  "print('RESULT', json.dumps(bool(torch.equal(state, torch.get_rng_state()))))")
    assert code == 0, err
    assert result(out) is True


def test_a_torch_without_mkl_or_onednn_is_probed_without_their_verbose_modes():
    code, out, err = fresh_python("torch.backends.mkl.is_available = lambda: False\n"
                                  "torch.backends.mkldnn.is_available = lambda: False\n"
                                  "KERNELS = utils.cpu_kernels()\n" + REPORT)
    assert code == 0, err
    assert result(out)["onednn"] is None and result(out)["mkl"] is None
