"""Audio front end: silence trimming and a log-mel filterbank (the "cochleagram").

The mel scale ``m = 2595 log10(1 + f / 700)`` (O'Shaughnessy 1987, as in HTK) spaces
triangular filters like the critical bands of the cochlea; the log of each filter's
energy per frame is the standard front end of speech recognisers (Davis & Mermelstein
1980) and of reservoir-computing speech tasks (Verstraeten et al. 2005 used Lyon's
cochlear model; a log-mel filterbank plays the same role here without a C extension).
Everything is vectorised numpy: frames are a strided view, one rFFT call per utterance.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["hz_to_mel", "log_mel", "mel_filterbank", "mel_to_hz", "trim_silence"]


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Mel value of frequency ``f`` (Hz): ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float = 50.0, fmax: float | None = None) -> np.ndarray:
    """Triangular filters equally spaced on the mel scale, shape ``(n_mels, n_fft // 2 + 1)``.

    Filter ``k`` rises from mel point ``k`` to ``k + 1`` and falls to ``k + 2`` (``n_mels + 2``
    points from ``fmin`` to ``fmax``, default the Nyquist frequency), with peak 1.
    """
    fmax = rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= rate/2 = {rate / 2}, got fmin={fmin}, fmax={fmax}")
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def _frames(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Frames of ``frame`` samples every ``hop`` samples (the end zero-padded), shape (n, frame)."""
    n = max(1, -(-(len(x) - frame) // hop) + 1) if len(x) > frame else 1
    padded = np.zeros((n - 1) * hop + frame, dtype=np.float64)
    padded[: len(x)] = x[: len(padded)]
    return sliding_window_view(padded, frame)[::hop]


def trim_silence(audio: np.ndarray, rate: int, threshold_db: float = -40.0, frame_ms: float = 10.0) -> np.ndarray:
    """``audio`` without its leading and trailing frames quieter than ``threshold_db`` below the loudest."""
    frame = max(1, int(rate * frame_ms / 1000))
    x = np.asarray(audio, dtype=np.float64)
    power = (_frames(x, frame, frame) ** 2).mean(axis=1)
    if not power.any():
        return audio[:0]
    loud = np.flatnonzero(10 * np.log10(power / power.max() + 1e-30) > threshold_db)
    return audio[loud[0] * frame: (loud[-1] + 1) * frame]


def log_mel(audio: np.ndarray, rate: int, n_mels: int = 32, frame_ms: float = 25.0, hop_ms: float = 10.0,
            fmin: float = 50.0, fmax: float | None = None) -> np.ndarray:
    """Log-mel energies (dB) of ``audio``, one row per ``hop_ms`` frame, shape ``(n_frames, n_mels)``.

    Each frame of ``frame_ms`` is Hann-windowed, its power spectrum taken by rFFT (next
    power of two) and summed through :func:`mel_filterbank`; energies are
    ``10 log10(e + 1e-10)``.
    """
    frame, hop = int(round(rate * frame_ms / 1000)), int(round(rate * hop_ms / 1000))
    if frame < 2 or hop < 1:
        raise ValueError(f"frame_ms={frame_ms} and hop_ms={hop_ms} are too short at {rate} Hz")
    n_fft = 1 << (frame - 1).bit_length()
    x = np.asarray(audio, dtype=np.float64)
    if np.issubdtype(np.asarray(audio).dtype, np.integer):
        x = x / np.iinfo(np.asarray(audio).dtype).max
    spec = np.abs(np.fft.rfft(_frames(x, frame, hop) * np.hanning(frame), n=n_fft, axis=1)) ** 2
    return 10.0 * np.log10(spec @ mel_filterbank(n_mels, n_fft, rate, fmin, fmax).T + 1e-10)
