"""py-spy on our services during a load run: flame graphs and top frames.

Two samplers per process, both ``--nonblocking`` (nothing is paused): one
writes the flame graph ``<svc>.svg``, the other collapsed stacks
``<svc>.folded`` (``--nolineno``: frames are functions), which are read
back here for the top frames. py-spy only samples threads that are on a
CPU, so the shares are shares of CPU time, not of wall time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from libs.common.settings import REPO_ROOT

PY_SPY = REPO_ROOT / ".venv" / "bin" / "py-spy"
OURS = ("libs/", "services/")
LOOP_SHARE = 0.9  # frames on ≥90% of stacks are the event loop's, not work
TOP = 5


def _commands(pids: dict[str, int], out_dir: Path, seconds: int) -> list[list[str]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    common = ["record", "--duration", str(seconds), "--nonblocking"]
    return [
        [
            str(PY_SPY),
            *common,
            "--pid",
            str(pid),
            "--format",
            fmt,
            *extra,
            "-o",
            f"{out_dir}/{name}.{ext}",
        ]
        for name, pid in pids.items()
        for fmt, ext, extra in (("flamegraph", "svg", []), ("raw", "folded", ["--nolineno"]))
    ]


async def record(pids: dict[str, int], out_dir: Path, seconds: int) -> dict[str, Any]:
    """Sample each ``name -> pid`` for ``seconds``; returns the top frames per name."""
    procs = [
        await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        for cmd in _commands(pids, out_dir, seconds)
    ]
    errors = [err.decode() for _, err in await asyncio.gather(*(p.communicate() for p in procs))]
    result: dict[str, Any] = {}
    for name in pids:
        folded = out_dir / f"{name}.folded"
        result[name] = (
            {**top_frames(folded.read_text()), "svg": str(out_dir / f"{name}.svg")}
            if folded.exists()
            else {"error": "\n".join(e[-500:] for e in errors)}
        )
    return result


def top_frames(folded: str, n: int = TOP) -> dict[str, Any]:
    """Top frames of collapsed stacks (``a;b;c count`` lines).

    ``self``: where the CPU was when sampled. ``inclusive``: frames on the
    stack, without the event loop's frames. ``ours``: inclusive, only
    Chainlog's own code.
    """
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        k = int(count)
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k

    def share(items: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [{"frame": f, "pct": round(100 * c / max(total, 1), 1)} for f, c in items]

    work = [(f, c) for f, c in incl.most_common() if c < LOOP_SHARE * total]
    return {
        "samples": total,
        "self": share(own.most_common(n)),
        "inclusive": share(work[:n]),
        "ours": share([(f, c) for f, c in work if any(o in f for o in OURS)][:n]),
    }


def describe(frames: dict[str, Any]) -> str:
    """The top frames of each service, as text (``inclusive`` stays in the JSON)."""
    out = []
    for name, f in frames.items():
        if "error" in f:
            out.append(f"\n{name}: py-spy failed: {f['error']}")
            continue
        out.append(f"\n{name}: {f['samples']} samples on CPU; flame graph {f['svg']}")
        for kind in ("self", "ours"):
            out.append(f"  {kind:9} " + "; ".join(f"{x['frame']} {x['pct']}%" for x in f[kind]))
    return "\n".join(out)
