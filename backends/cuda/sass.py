"""Static evidence for our CUDA C kernels, without a GPU: compile every instantiation with
NVRTC for a real architecture, read ptxas's resource report, disassemble the cubin with
``cuobjdump -sass`` and count the instructions of the main loops.

    python -m backends.sass                      # table for sm_90
    python -m backends.sass --arch sm_80 --out build/sass   # also write each main loop's SASS (build/ is ignored)

Counting rule (what "instructions per element" means here):

* A loop is a backward branch: a ``BRA`` whose target lies at a lower address; its body is
  every instruction from the target to the branch, inclusive.
* The statistics main loop is a loop whose body holds exactly U global loads (``LDG``)
  and no global store, U = ``gn::Unroll<VEC>`` (4 vectors, or 16 / VEC scalars): the
  full-batch loop of ``gn::thread_moments``. The normalize main loop holds U loads and U
  global stores (``STG``): the full-batch loop of ``gn::normalize`` with scale and shift
  from the shared-memory table. The kernel instantiates each more than once (linear and
  general walks; planar and channels-last): each copy is counted, the budget applies to
  the most expensive copy. Not budgeted: the normalize fallback for groups of more than
  1024 channels (2048 float32 table entries), which reads w and b from global memory
  (3U loads a batch), and the one-item tail loops.
* Instructions per element = instructions in the body / (U x VEC), the elements one
  iteration handles. Every instruction counts once (address arithmetic, conversions,
  predicated ones, the branch, NOPs the assembler placed in the body).

Occupancy from registers and shared memory with the sm_80/sm_90 rules: 65536 registers a
SM allocated per warp in units of 256, at most 2048 threads, 32 blocks, 228 KiB of shared
memory (1 KiB reserved a block).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .cupy_backend import COMPILE_OPTIONS, all_name_expressions, source
from .launch import THREADS, unroll

RESOURCE = re.compile(r"Compiling entry function '(?P<symbol>[^']+)'.*?Used (?P<registers>\d+) registers"
                      r"(?P<rest>[^\n]*)", re.S)
SMEM = re.compile(r"(\d+) bytes smem")
SPILL = re.compile(r"Function properties for (?P<symbol>\S+)\s+(?:ptxas\s+\.\s+)?(?P<stack>\d+) bytes stack frame, "
                   r"(?P<stores>\d+) bytes spill stores, (?P<loads>\d+) bytes spill loads")
LINE = re.compile(r"/\*(?P<address>[0-9a-f]{4,})\*/\s+(?P<text>[^;]*);")


class ToolMissing(RuntimeError):
    """NVRTC, the CUDA headers, cuobjdump or nvdisasm is not on this machine (the message
    says which and how to get it)."""


@dataclass
class Loop:
    start: int
    end: int
    instructions: list
    loads: int
    stores: int

    @property
    def size(self) -> int:
        return len(self.instructions)


@dataclass
class KernelReport:
    name: str
    symbol: str
    vec: int
    registers: int
    spill_bytes: int
    smem_bytes: int
    blocks_per_sm: int
    stats_loops: list = field(default_factory=list)
    normalize_loops: list = field(default_factory=list)

    def per_element(self, which: str) -> float | None:
        loops = self.stats_loops if which == "stats" else self.normalize_loops
        return max(loop.size for loop in loops) / (unroll(self.vec) * self.vec) if loops else None

    def worst(self, which: str) -> Loop | None:
        loops = self.stats_loops if which == "stats" else self.normalize_loops
        return max(loops, key=lambda loop: loop.size) if loops else None


def cuda_include() -> str | None:
    """A directory holding cuda_fp16.h (the toolkit next to nvcc, or CUDA_PATH), or None."""
    for candidate in (os.environ.get("CUDA_PATH"), os.path.dirname(os.path.dirname(shutil.which("nvcc") or "")),
                      "/usr/local/cuda"):
        if candidate and os.path.exists(os.path.join(candidate, "include", "cuda_fp16.h")):
            return os.path.join(candidate, "include")
    return None


def cuda_binary(name: str) -> str | None:
    """A CUDA binary tool: on PATH, from an NVIDIA wheel (nvidia-cuda-cuobjdump, -nvdisasm),
    or in the CUDA toolkit."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import nvidia

        for root in nvidia.__path__:
            for sub in ("cu13", "cu12", f"cuda_{name}"):
                path = os.path.join(root, sub, "bin", name)
                if os.path.exists(path):
                    return path
    except ImportError:
        pass
    path = f"/usr/local/cuda/bin/{name}"
    return path if os.path.exists(path) else None


def cuobjdump() -> str | None:
    return cuda_binary("cuobjdump")


def compile_cubin(arch: str = "sm_90", names: list[str] | None = None) -> tuple[bytes, str, dict]:
    """(cubin, ptxas log, {name expression: lowered symbol}) for ``names`` (default: all)."""
    try:
        from cuda.bindings import nvrtc
        nvrtc.nvrtcVersion()
    except Exception as error:
        raise ToolMissing(f"NVRTC is not loadable ({error}): pip install nvidia-cuda-nvrtc cuda-bindings") from None
    include = cuda_include()
    if include is None:
        raise ToolMissing("no CUDA headers (cuda_fp16.h): install the CUDA toolkit or set CUDA_PATH")
    names = names or all_name_expressions()
    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
    status, program = nvrtc.nvrtcCreateProgram(source().encode(), b"groupnorm.cu", 0, [], [])
    assert status == ok, status
    for name in names:
        assert nvrtc.nvrtcAddNameExpression(program, name.encode())[0] == ok
    options = [*(o.encode() for o in COMPILE_OPTIONS), f"--gpu-architecture={arch}".encode(), b"-Xptxas=-v",
               f"-I{include}".encode()]
    result = nvrtc.nvrtcCompileProgram(program, len(options), options)[0]
    size = nvrtc.nvrtcGetProgramLogSize(program)[1]
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(program, log)
    log = log.decode(errors="replace").replace("\x00", "")
    if result != ok:
        raise RuntimeError(f"NVRTC failed for {arch}:\n{log[-4000:]}")
    symbols = {}
    for name in names:
        status, symbol = nvrtc.nvrtcGetLoweredName(program, name.encode())
        symbols[name] = symbol.decode() if isinstance(symbol, bytes) else symbol
    size = nvrtc.nvrtcGetCUBINSize(program)[1]
    cubin = b" " * size
    nvrtc.nvrtcGetCUBIN(program, cubin)
    nvrtc.nvrtcDestroyProgram(program)
    return cubin, log, symbols


def disassemble(cubin: bytes) -> dict[str, list[tuple[int, str]]]:
    """{symbol: [(address, instruction), ...]} from ``cuobjdump -sass``."""
    tool, disassembler = cuobjdump(), cuda_binary("nvdisasm")
    if tool is None or disassembler is None:
        raise ToolMissing("no cuobjdump/nvdisasm: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm "
                          "(or the CUDA toolkit)")
    env = dict(os.environ, NVDISASM_PATH=os.path.dirname(disassembler))  # cuobjdump -sass runs nvdisasm
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as handle:
        handle.write(cubin)
    try:
        text = subprocess.run([tool, "-sass", handle.name], capture_output=True, text=True, check=True,
                              env=env).stdout
    finally:
        os.unlink(handle.name)
    functions, current = {}, None
    for line in text.splitlines():
        header = re.match(r"\s*Function : (\S+)", line)
        if header:
            current = functions.setdefault(header.group(1), [])
            continue
        match = LINE.search(line)
        if match and current is not None:
            current.append((int(match.group("address"), 16), " ".join(match.group("text").split())))
    return functions


def loops(code: list[tuple[int, str]]) -> list[Loop]:
    """Every backward branch's body (see the counting rule)."""
    found = []
    for address, text in code:
        branch = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if not branch:
            continue
        target = int(branch.group(1), 16)
        if target >= address:
            continue
        body = [(a, t) for a, t in code if target <= a <= address]
        loads = sum(1 for _, t in body if re.search(r"\bLDG\b", t))
        stores = sum(1 for _, t in body if re.search(r"\bSTG\b", t))
        found.append(Loop(target, address, body, loads, stores))
    return found


def occupancy(registers: int, smem: int, threads: int = THREADS) -> int:
    warps = threads // 32
    per_warp = -(-registers * 32 // 256) * 256
    by_registers = 65536 // (warps * per_warp) if registers else 32
    by_threads = 2048 // threads
    by_smem = (228 * 1024) // (smem + 1024)
    return max(0, min(by_registers, by_threads, by_smem, 32))


def report(arch: str = "sm_90") -> tuple[list[KernelReport], dict]:
    """One KernelReport per instantiation, and the disassembly by symbol."""
    cubin, log, symbols = compile_cubin(arch)
    code = disassemble(cubin)
    resources = {m.group("symbol"): m for m in RESOURCE.finditer(log)}
    spills = {m.group("symbol"): int(m.group("stores")) + int(m.group("loads")) for m in SPILL.finditer(log)}
    reports = []
    for name, symbol in symbols.items():
        vec = int(name.rsplit(",", 1)[1].strip(" >"))
        used = resources[symbol]
        smem = SMEM.search(used.group("rest"))
        registers, smem = int(used.group("registers")), int(smem.group(1)) if smem else 0
        found = loops(code.get(symbol, []))
        reports.append(KernelReport(
            name, symbol, vec, registers, spills.get(symbol, 0), smem, occupancy(registers, smem),
            stats_loops=[lp for lp in found if lp.loads == unroll(vec) and lp.stores == 0],
            normalize_loops=[lp for lp in found if lp.loads == unroll(vec) and lp.stores == unroll(vec)]))
    return reports, code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.sass", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--out", help="write each kernel's worst statistics and normalize loop here (ARCH/NAME.sass)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (the README's)")
    args = parser.parse_args(argv)
    try:
        reports, _ = report(args.arch)
    except ToolMissing as error:
        print(f"cannot disassemble: {error}", file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(reports, args.arch))
        return 0
    print(f"{'kernel':34} {'regs':>4} {'spill':>5} {'smem':>5} {'blk/SM':>6} {'stats/el':>8} {'norm/el':>8}")
    for r in reports:
        stats, norm = r.per_element("stats"), r.per_element("normalize")
        print(f"{r.name:34} {r.registers:4d} {r.spill_bytes:5d} {r.smem_bytes:5d} {r.blocks_per_sm:6d} "
              f"{_number(stats):>8} {_number(norm):>8}")
        if args.out:
            folder = os.path.join(args.out, args.arch)
            os.makedirs(folder, exist_ok=True)
            slug = re.sub(r"[^A-Za-z0-9]+", "_", r.name).strip("_")
            with open(os.path.join(folder, f"{slug}.sass"), "w") as handle:
                for which in ("stats", "normalize"):
                    loop = r.worst(which)
                    if loop is None:
                        continue
                    handle.write(f"// {r.name} ({r.symbol}), {arch_note(args.arch)}: {which} main loop, "
                                 f"{loop.size} instructions for {unroll(r.vec)} x {r.vec} elements\n")
                    handle.writelines(f"/*{a:04x}*/ {t} ;\n" for a, t in loop.instructions)
                    handle.write("\n")
    return 0


def markdown(reports, arch: str) -> str:
    """The README's table: one row per instantiation."""
    lines = [f"SASS, {arch_note(arch)} (`python -m backends.sass --arch {arch} --markdown`)", "",
             f"| instantiation | registers | blocks/SM ({THREADS} threads) | shared bytes | statistics instr/elem | "
             "normalize instr/elem |", "|---|---|---|---|---|---|"]
    for r in reports:
        lines.append(f"| `{r.name}` | {r.registers} | {r.blocks_per_sm} | {r.smem_bytes} | "
                     f"{_number(r.per_element('stats'))} | {_number(r.per_element('normalize'))} |")
    return "\n".join(lines)


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def arch_note(arch: str) -> str:
    return f"{arch}, NVRTC {' '.join(COMPILE_OPTIONS)}"


if __name__ == "__main__":
    sys.exit(main())
