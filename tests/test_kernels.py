"""The CPU kernels a run uses: pinned to AVX2 on 2 threads by default and judged by what they compute (a kernel
fingerprint), never by a vendor's banner; refused when it is too late to pin or the CPU lacks AVX2; recorded
honestly. Each case runs in a fresh Python, since every library reads its choice once per process."""
import json
import platform
import subprocess
import sys

import pytest
import torch

import records
from conftest import ROOT

X86_AVX2 = platform.machine().lower() in ("x86_64", "amd64") and records.cpu_isa() in ("AVX2", "AVX-512")
needs_avx2 = pytest.mark.skipif(not X86_AVX2, reason="pinning to AVX2 needs an x86-64 CPU with AVX2")

# what the libraries print about themselves, as seen on three machines
ONEDNN = "onednn_verbose,v1,info,cpu,isa:Intel AVX2\n"
MKL_AMD = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
           "Architecture processors, Lnx 2.60GHz lp64 gnu_thread\n")
MKL_INTEL = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
             "Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.60GHz lp64 gnu_thread\n")


def fresh_python(code, env=None):
    """Run code in a new interpreter beside records.py; return (exit code, stdout, stderr)."""
    import os
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "ONEDNN_", "MKL_", "OMP_"))}
    proc = subprocess.run([sys.executable, "-c", "import json, torch, records\n" + code], cwd=ROOT, text=True,
                          capture_output=True, env={**environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


REPORT = 'print("RESULT", json.dumps({**KERNELS, "hardware": records.hardware(torch.device("cpu"))}))\n'


def result(stdout):
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.parametrize("text, expected", [
    (ONEDNN + MKL_INTEL, {"onednn": "Intel AVX2", "mkl": "AVX2"}),
    (ONEDNN + MKL_AMD, {"onednn": "Intel AVX2", "mkl": "unknown"}),  # MKL names no instruction set on AMD
])
def test_the_banners_of_an_intel_and_an_amd_cpu_are_read_for_the_record(text, expected):
    assert records.parse_verbose(text) == expected


def test_a_torch_without_mkl_reads_none_for_it():
    assert records.parse_verbose(ONEDNN, onednn_built=True, mkl_built=False) == {"onednn": "Intel AVX2", "mkl": None}


@needs_avx2
def test_the_pin_gives_the_published_kernels_on_two_threads_and_says_so():
    code, out, err = fresh_python("import os\ntorch.set_num_threads(1)\n"
                                  "KERNELS = records.choose_kernels(torch.device('cpu'))\n"
                                  "KERNELS['env'] = {k: os.environ.get(k) for k in records.PIN_ENV}\n" + REPORT)
    assert code == 0, err
    k = result(out)
    assert k["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert k["aten"] == "AVX2" and k["threads"] == 2 and k["pinned"] is True
    assert k["fingerprint"] == records.PIN_FINGERPRINT  # what the published runs' kernels compute
    assert "(AVX2, pinned)" in k["hardware"] and "2 torch threads" in k["hardware"]


@needs_avx2
def test_the_fingerprint_is_repeatable_and_tells_the_thread_count_apart():
    prints = []
    for threads in (2, 2, 1):
        code, out, err = fresh_python(f"torch.set_num_threads({threads})\nprint('RESULT', json.dumps("
                                      "records.kernel_fingerprint()))", env=records.PIN_ENV)
        assert code == 0, err
        prints.append(result(out))
    assert prints[0] == prints[1] == records.PIN_FINGERPRINT != prints[2]


@needs_avx2
def test_a_later_thread_count_unpins_the_record():
    code, out, err = fresh_python("records.pin_kernels()\ntorch.set_num_threads(1)\nKERNELS = records.cpu_kernels()\n"
                                  + REPORT)
    assert code == 0, err
    assert result(out)["pinned"] is False and "pinned" not in result(out)["hardware"]


@needs_avx2
def test_without_the_pin_the_cpu_runs_its_own_kernels_even_under_a_parents_pin():
    # a child of a pinned process inherits the variables: unpinned must mean the CPU's own kernels
    code, out, err = fresh_python("import os\nKERNELS = records.choose_kernels(torch.device('cpu'), pin_cpu=False)\n"
                                  "assert not any(k in os.environ for k in records.PIN_ENV)\n" + REPORT,
                                  env=records.PIN_ENV)
    assert code == 0, err
    k = result(out)
    assert k["pinned"] is False and "pinned" not in k["hardware"]
    own = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         capture_output=True, text=True).stdout.strip()
    assert k["aten"] == own


@needs_avx2
def test_too_late_to_pin_atens_kernels_stops_the_run():
    # ATen chose its (here: plain) kernels at the first operation; the pin cannot change them any more
    code, _, err = fresh_python("torch.ones(3).add(1)\nrecords.pin_kernels()", env={"ATEN_CPU_CAPABILITY": "default"})
    assert code != 0 and "RuntimeError: pin_kernels: too late, torch computed something before the pin" in err
    assert "ATen DEFAULT" in err and "Restart the kernel" in err and "pin_cpu = False" in err


@needs_avx2
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_too_late_to_pin_onednn_is_caught_by_what_it_computes():
    code, _, err = fresh_python("x = torch.ones(1, 16, 8, 8).contiguous(memory_format=torch.channels_last)\n"
                                "torch.nn.functional.conv2d(x, torch.ones(16, 16, 3, 3), padding=1)\n"
                                "records.pin_kernels()", env={"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "avx2"})
    assert code != 0 and "pin_kernels: too late" in err and f"pinned they give {records.PIN_FINGERPRINT}" in err
    assert "its kernels: ATen AVX2," in err  # ATen was pinned in time: only what oneDNN computed tells


@needs_avx2
def test_kernels_that_compute_other_bits_run_but_are_recorded_unpinned():
    # as another torch release would: the pin holds, but its fingerprint is not the published runs'
    code, out, err = fresh_python("records.PIN_FINGERPRINT = '0' * 16\nKERNELS = records.pin_kernels()\n" + REPORT)
    assert code == 0, err
    assert "not the published runs' 0000000000000000" in out and "recorded as not pinned" in out
    assert "torch 2.14.1" in out and "model.py's Net or utils.sgd was changed" in out  # both causes named
    assert "threads split the sums" not in out  # the pin's own 2 threads are not a cause
    assert result(out)["pinned"] is False and result(out)["aten"] == "AVX2"


@needs_avx2
def test_a_pin_on_another_thread_count_names_the_threads_as_a_cause():
    code, out, err = fresh_python("KERNELS = records.pin_kernels(threads=1)\n" + REPORT)
    assert code == 0, err
    assert "this run's 1 thread(s) split the sums otherwise than the published runs' 2" in out and "model.py" in out
    assert result(out)["pinned"] is False


@pytest.mark.parametrize("code", [0, 1])  # silent, whether it failed or not
def test_a_fresh_python_that_prints_nothing_is_a_clear_error(monkeypatch, code):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, code, stdout="", stderr=""))
    with pytest.raises(RuntimeError, match="could not compute the kernel fingerprint.*it printed nothing"):
        records._fresh_fingerprint(2)


@needs_avx2
def test_turning_the_pin_off_after_a_pin_restores_torch_s_own_thread_count():
    code, out, err = fresh_python("records.pin_kernels(threads=1)\n"
                                  "KERNELS = records.choose_kernels(torch.device('cpu'), pin_cpu=False)\n" + REPORT)
    assert code == 0, err
    own = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True).stdout.strip()
    assert result(out)["threads"] == int(own) and result(out)["pinned"] is False


def test_an_x86_cpu_without_avx2_is_refused_before_torch_computes_anything(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx\n")
    for switch in ("pin_cpu = False", "--no-pin"):
        code, out, err = fresh_python(
            "import platform\nplatform.machine = lambda: 'x86_64'\n"
            f"try:\n    records.pin_kernels(off_switch={switch!r}, cpuinfo={str(cpuinfo)!r})\n"
            "except RuntimeError as e:\n    print('RESULT', json.dumps([str(e), records._KERNELS]))\n")
        assert code == 0, err
        message, measured = result(out)
        assert message.startswith("pin_kernels: this x86-64 CPU has no AVX2") and f"Set {switch} " in message
        assert measured == {}  # nothing ran: no AVX2 instruction could have crashed the process


def test_a_cpu_without_avx2_is_told_and_runs_its_own_kernels():
    code, out, err = fresh_python("import platform\nplatform.machine = lambda: 'arm64'\n"
                                  "KERNELS = records.choose_kernels(torch.device('cpu'))\n" + REPORT)
    assert code == 0, err
    assert "this arm64 CPU has no AVX2" in out and result(out)["pinned"] is False


def test_the_kernel_probe_draws_no_random_number():
    code, out, err = fresh_python("state = torch.get_rng_state()\nrecords.cpu_kernels()\n"
                                  "print('RESULT', json.dumps(bool(torch.equal(state, torch.get_rng_state()))))")
    assert code == 0, err
    assert result(out) is True


def test_a_torch_without_mkl_or_onednn_is_probed_without_their_verbose_modes():
    code, out, err = fresh_python("torch.backends.mkl.is_available = lambda: False\n"
                                  "torch.backends.mkldnn.is_available = lambda: False\n"
                                  "KERNELS = records.cpu_kernels()\n" + REPORT)
    assert code == 0, err
    assert result(out)["onednn"] is None and result(out)["mkl"] is None
