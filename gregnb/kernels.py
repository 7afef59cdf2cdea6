"""Portable CPU kernels: the same rounding on every current x86-64 CPU, so a findings record travels.

PyTorch picks its CPU kernels by the vector instructions the processor has: AVX-512 on one laptop, AVX2 on
another, NEON on Apple silicon. Each rounds a sum in a different order, a trained model lands elsewhere, and a
verdict that hung on one seed can flip. On x86-64, importing :mod:`gregnb` therefore limits ATen's kernels,
oneDNN's (the convolutions) and MKL's (the matrix products) to AVX2, which every x86-64 CPU of the last decade has,
before torch runs its first CPU operation. Set ``GREGNB_NATIVE_KERNELS=1`` for the fastest kernels of your CPU
(numbers then differ from the records in the last bits, and the findings check compares them statistically).

The pin is set through environment variables that the libraries read when they first run, so it takes effect
only if :mod:`gregnb` is imported before torch computes anything on the CPU; :func:`kernel_report` says which
level is in force. What the pin costs in speed: ``benchmarks/kernels.py``.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

__all__ = ["OPT_OUT", "PORTABLE", "pin_portable_kernels", "native_isa", "kernel_level", "kernels_pinned",
           "kernel_report", "platform_key"]

#: the environment variable that lifts the pin (any of 1 / true / yes)
OPT_OUT = "GREGNB_NATIVE_KERNELS"
#: what the pin sets: ATen's dispatch level, oneDNN's highest ISA, MKL's reproducible code branch
PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT, "").strip().lower() in {"1", "true", "yes"}


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_isa() -> str:
    """The widest vector instruction set this CPU offers: ``"AVX512"``, ``"AVX2"``, ``"x86_64"`` (older),
    or the architecture's name elsewhere (``"arm64"``). Read from the system, not from torch."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return machine or "unknown"
    flags = _cpu_flags()
    if not flags:
        return "x86_64 (flags unknown)"
    return "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "x86_64"


def pin_portable_kernels() -> bool:
    """Set :data:`PORTABLE` in the environment (values a user set are kept) unless :data:`OPT_OUT` is set or the
    CPU is not an x86-64 with AVX2. Returns whether the pin is asked for. Called when :mod:`gregnb` is imported."""
    if _opted_out() or native_isa() not in ("AVX512", "AVX2"):
        return False
    for key, value in PORTABLE.items():
        os.environ.setdefault(key, value)
    if "torch" in sys.modules and kernel_level() != "AVX2":  # torch already ran CPU work: too late for the pin
        import warnings

        warnings.warn(f"gregnb: torch's CPU kernels already run at {kernel_level()}, not the records' AVX2, because "
                      f"torch computed something before gregnb was imported. Numbers will differ from the records in "
                      f"the last bits; restart the kernel and import gregnb (or any gregnb module) first.", stacklevel=3)
    return True


def kernel_level() -> str:
    """The level torch's CPU kernels run at in this process (``"AVX2"``, ``"AVX512"``, ``"DEFAULT"``, ...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def kernels_pinned() -> bool:
    """True when this process runs the portable level (AVX2) on an x86-64 CPU that has it."""
    return native_isa() in ("AVX512", "AVX2") and kernel_level() == "AVX2" and \
        os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2"


def kernel_report() -> str:
    """One line for the environment check: which CPU kernels are in force, and why."""
    native, level = native_isa(), kernel_level()
    if native not in ("AVX512", "AVX2"):
        return f"{level} ({native} CPU: records made on x86-64 are compared statistically here)"
    if kernels_pinned():
        extra = f"; this CPU has {native}" if native != "AVX2" else ""
        return f"{level}, pinned: the level the findings records are made at{extra} ({OPT_OUT}=1 lifts it)"
    why = (f"{OPT_OUT} is set" if _opted_out() else
           "torch ran CPU work before gregnb was imported: restart the kernel and import gregnb first")
    return f"{level}, native, not the records' AVX2 ({why}); numbers are compared with the records statistically"


def platform_key(device: str = "cpu") -> dict:
    """What decides a run's rounding: the architecture, the CPU's vector set, the kernel level in force, torch's
    version and the type of the device the models run on (``gregnb.config.device().type``).

    Two runs with equal keys (and the same code) are expected to give the same numbers to the last bit; runs with
    different keys are compared statistically by the findings check."""
    import torch

    return {"arch": platform.machine(), "cpu": native_isa(), "kernels": kernel_level(),
            "torch": torch.__version__.split("+")[0], "device": str(device)}
