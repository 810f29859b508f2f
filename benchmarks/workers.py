"""Running one quantization tool per fresh interpreter, so each gets its own peak-memory figure."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict, List


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM missing from /proc/self/status")


def run_json_worker(cmd: List[str], label: str) -> Dict:
    """Run ``cmd`` and return the last JSON object line it printed, or ``{'error': message}`` on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"{label} failed: {' | '.join(tail)}"}
    return json.loads(lines[-1])
