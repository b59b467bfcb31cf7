"""The demo pipeline: three chained functions, cached with ``@store.cache``, computed once, then
served from the store.

``stimulus`` (a noisy periodic drive), ``population`` (leaky integrate-and-fire neurons that
it drives) and ``rate_analysis`` (of the spikes), then a small sweep: the analysis at the bin
widths of ``sweep.bin_ms`` (a table in ``gitstore ui``). Each is a plain function wrapped with
``store.cache``: its arguments (from a YAML parameter file) are its parameters, and a result
passed as is from one cached call into the next (``drive``, ``spikes``) makes the upstream call
an *input* of the downstream one, as ``gitstore show`` lists. ``progress`` is ``ignore``d (it does
not change results). The demo pins ``version="1"`` so its keys are the same on every install
(without it, the version is the code identity of this module).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitstore import GitDataStore, ParameterSet

try:
    import numpy as np
except ImportError:  # the demo runs without numpy too, on a smaller network
    np = None

PARAMS = Path(__file__).with_name("demo_params.yaml")
Progress = Callable[[str, float], None]


def _quiet(stage: str, fraction: float) -> None:
    pass


def stimulus(duration_ms: float, dt_ms: float, rate_hz: float, amplitude: float, seed: int,
             progress: Progress = _quiet) -> Any:
    steps = int(duration_ms / dt_ms)
    rng = random.Random(seed)
    drive = [amplitude * (0.5 + 0.5 * math.sin(2 * math.pi * rate_hz * i * dt_ms / 1000.0)) +
             0.1 * rng.gauss(0, 1) for i in range(steps)]
    progress("stimulus", 1.0)
    return np.array(drive) if np is not None else drive


def population(drive: Any, dt_ms: float, n_neurons: int, tau_m_ms: float, v_threshold: float,
               v_reset: float, noise: float, seed: int, progress: Progress = _quiet) -> Any:
    n = n_neurons if np is not None else min(n_neurons, 40)
    steps = len(drive)
    decay = dt_ms / tau_m_ms
    if np is not None:
        rng = np.random.default_rng(seed)
        v = np.zeros(n)
        spikes_t, spikes_i = [], []
        for step in range(steps):
            v += decay * (drive[step] - v) + noise * math.sqrt(decay) * rng.standard_normal(n)
            fired = np.nonzero(v >= v_threshold)[0]
            if fired.size:
                v[fired] = v_reset
                spikes_t.append(np.full(fired.size, step * dt_ms))
                spikes_i.append(fired)
            if step % 500 == 0:
                progress("population", step / steps)
        progress("population", 1.0)
        return np.stack([np.concatenate(spikes_t), np.concatenate(spikes_i)])
    rng2 = random.Random(seed)
    vs = [0.0] * n
    spikes: list[list[float]] = [[], []]
    for step in range(steps):
        for i in range(n):
            vs[i] += decay * (drive[step] - vs[i]) + noise * math.sqrt(decay) * rng2.gauss(0, 1)
            if vs[i] >= v_threshold:
                vs[i] = v_reset
                spikes[0].append(step * dt_ms)
                spikes[1].append(float(i))
        if step % 500 == 0:
            progress("population", step / steps)
    progress("population", 1.0)
    return spikes


def rate_analysis(spikes: Any, bin_ms: float, duration_ms: float, n: int,
                  progress: Progress = _quiet) -> Any:
    bins = int(duration_ms / bin_ms)
    counts = [0] * bins
    for t in spikes[0]:
        counts[min(int(t / bin_ms), bins - 1)] += 1
    progress("analysis", 1.0)
    rates = [c / n / (bin_ms / 1000.0) for c in counts]
    return {"bin_ms": bin_ms, "rates_hz": rates, "mean_rate_hz": sum(rates) / len(rates),
            "peak_rate_hz": max(rates)}


_SHOWN = {"stimulus": "Stimulus", "population": "Population", "analysis": "RateAnalysis"}


def run(store: GitDataStore, params: ParameterSet, progress: Progress) -> dict[str, Any]:
    """Run the pipeline, taking every result the store already has; report what was computed."""
    cache = store.cache(version="1", ignore=["progress"])
    cached_stimulus, cached_population, cached_analysis = (
        cache(stimulus), cache(population), cache(rate_analysis))
    computed: list[str] = []
    t0 = time.perf_counter()

    def report(stage: str, fraction: float) -> None:  # only a computing stage reports
        if _SHOWN[stage] not in computed:
            computed.append(_SHOWN[stage])
        progress(stage, fraction)

    s, p, a = params.stimulus, params.population, params.analysis
    n = p.n_neurons if np is not None else min(p.n_neurons, 40)
    drive = cached_stimulus(**s, progress=report)
    spikes = cached_population(drive, s.dt_ms, **p, progress=report)
    rates = cached_analysis(spikes, a.bin_ms, s.duration_ms, n, progress=report)
    sweep = []  # a small sweep: the analysis again at other bin widths (a table in gitstore ui)
    for bin_ms in params.get("sweep", {}).get("bin_ms", []):
        swept = cached_analysis(spikes, float(bin_ms), s.duration_ms, n, progress=report)
        sweep.append((float(bin_ms), swept["peak_rate_hz"]))
    for stage in _SHOWN:
        progress(stage, 1.0)
    keys = [cached_stimulus.key(**s), cached_population.key(drive, s.dt_ms, **p),
            cached_analysis.key(spikes, a.bin_ms, s.duration_ms, n)]
    return {"computed": computed, "seconds": time.perf_counter() - t0,
            "mean_rate_hz": rates["mean_rate_hz"], "spikes": len(spikes[0]), "keys": keys,
            "sweep": sweep}
