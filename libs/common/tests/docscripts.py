"""The standalone scripts of ``docs/*.md``, taken and run as a reader would: extracted
from the page, checked to need nothing but Python and ``cryptography``, run as a program."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def doc_script(doc: Path, marker: str) -> str:
    """The first Python block after ``<!-- marker`` in ``doc``."""
    after = doc.read_text(encoding="utf-8").split(f"<!-- {marker}", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def check_short_and_self_contained(code: str, max_lines: int) -> None:
    """At most ``max_lines``; imports only the standard library and ``cryptography``."""
    assert len(code.splitlines()) <= max_lines
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for n in names:
                assert n and (
                    n.split(".")[0] in sys.stdlib_module_names or n.startswith("cryptography.")
                )


def run_script(
    tmp: Path, code: str, name: str, *args: Path | str
) -> subprocess.CompletedProcess[str]:
    """``code`` saved as ``tmp/name`` and run with ``args``."""
    script = tmp / name
    script.write_text(code, encoding="utf-8")
    # -I: no user site, no current directory, no PYTHON* variables; this
    # interpreter's packages (cryptography) stay.
    cmd = [sys.executable, "-I", str(script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
