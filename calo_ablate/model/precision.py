"""Instruction sets of this machine and the precision they allow: bf16 only where it runs natively.

CPU facts come from the flags of /proc/cpuinfo (Linux) and torch.backends.cpu.get_cpu_capability()
(the kernel family torch dispatches to: "DEFAULT", "AVX2", "AVX512", ...):
- avx2, avx512f: the fp32 vector widths;
- avx512_bf16 (e.g. AMD Zen 4, Intel Cooper Lake) or amx_bf16 (Intel Sapphire Rapids tiles): native
  bf16 dot products. Without either, oneDNN emulates bf16 matmuls and convolutions: a 2048^2 bf16
  matmul then took minutes where fp32 took a tenth of a second, so bf16-mixed is refused there.
GPU: torch.cuda.is_bf16_supported() (native from compute capability 8.0, Ampere).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from calo_ablate.errors import ConfigError

__all__ = ["BF16", "InstructionSet", "bf16_native", "check_precision", "cpu_flags", "cpu_model", "instruction_set",
           "machine_line"]

BF16 = "bf16-mixed"
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags of the first processor in `cpuinfo`; empty where the file does not exist."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM
            return frozenset(value.split())
    return frozenset()


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The 'model name' of the first processor in `cpuinfo`, e.g. 'AMD EPYC 7B13'; platform.machine() where absent."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.machine()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.machine()


@dataclass(frozen=True)
class InstructionSet:
    """What the CPU computes natively, and the kernel family torch uses on it."""

    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx_bf16: bool
    torch_capability: str

    @property
    def native_bf16(self) -> bool:
        return self.avx512_bf16 or self.amx_bf16

    def describe(self) -> str:
        """One line, e.g. 'AVX2 yes, AVX-512 yes, native bf16 yes (avx512_bf16), AMX no; torch kernels AVX512'."""
        def yes(flag: bool) -> str:
            return "yes" if flag else "no"

        how = ", ".join(name for name, on in (("avx512_bf16", self.avx512_bf16), ("amx_bf16", self.amx_bf16)) if on)
        return (f"AVX2 {yes(self.avx2)}, AVX-512 {yes(self.avx512)}, native bf16 {yes(self.native_bf16)}"
                f"{f' ({how})' if how else ''}, AMX {yes(self.amx_bf16)}; torch kernels {self.torch_capability}")


def instruction_set(flags: frozenset[str] | None = None) -> InstructionSet:
    """This machine's InstructionSet (flags: the CPU flags, default read from /proc/cpuinfo)."""
    flags = cpu_flags() if flags is None else flags
    return InstructionSet(avx2="avx2" in flags, avx512="avx512f" in flags, avx512_bf16="avx512_bf16" in flags,
                          amx_bf16="amx_bf16" in flags, torch_capability=torch.backends.cpu.get_cpu_capability())


def machine_line() -> str:
    """One line to read a test run against: 'CPU: <model>; AVX2 yes, AVX-512 no, ...; <n> cores'."""
    return f"CPU: {cpu_model()}; {instruction_set().describe()}; {os.cpu_count()} cores"


def bf16_native(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with avx512_bf16/amx_bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return instruction_set().native_bf16
    return False


def check_precision(precision: str, device: torch.device | str, key: str) -> None:
    """Raise ConfigError when `precision` (the value of config key `key`) is bf16-mixed on a device that
    would only emulate bf16 (a hundredfold slowdown, not a speed-up); 32-true always passes."""
    if precision != BF16 or bf16_native(device):
        return
    device = torch.device(device)
    where = "this GPU (torch.cuda.is_bf16_supported() is False)" if device.type == "cuda" else \
        f"this {device.type.upper()} (no avx512_bf16 or amx_bf16 in {CPUINFO})"
    msg = (f"{key}={precision}: bf16 is not native on {where}; it would be emulated, many times slower "
           f"than fp32. Use {key}=32-true")
    raise ConfigError(msg)


if __name__ == "__main__":
    print(machine_line())
