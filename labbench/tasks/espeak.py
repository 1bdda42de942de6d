"""Speech synthesis with the ``espeak-ng`` program, cached on disk.

eSpeak NG is a formant synthesiser (its English voices descend from Klatt's cascade-
parallel synthesiser, Klatt 1980). Changing the accent, the voice variant, the pitch and
the speaking rate gives recognisably different "speakers" of the same words, which is what
the ``spoken_digits`` task needs for a speaker-independent split without a licensed
corpus such as TI46.

Nothing here is imported by the rest of labbench unless a speech task is used;
:func:`synthesize` raises :class:`EspeakMissing` with install instructions when the
program is not on ``PATH``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["EspeakMissing", "Speaker", "cache_dir", "espeak_version", "make_speakers", "synthesize", "utterances"]

#: the eight English accents that ship with espeak-ng's own data (no MBROLA needed)
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
#: voice variants (``!v/<name>`` in espeak-ng-data): formant, breathiness and synthesiser choices
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4")

_INSTALL_HINT = ("install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu), "
                 "`sudo dnf install espeak-ng` (Fedora) or `brew install espeak-ng` (macOS), "
                 "or set LABBENCH_ESPEAK to the program's path")


class EspeakMissing(RuntimeError):
    """The ``espeak-ng`` program is not installed (or not runnable)."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an accent, a voice variant, a pitch and a speaking rate.

    Attributes
    ----------
    accent : str
        espeak-ng voice name, e.g. ``"en-gb-scotland"``.
    variant : str
        Voice variant, e.g. ``"f3"`` or ``"klatt2"``.
    pitch : int
        Base pitch, 0..99 (espeak-ng's ``-p``; 50 is the default).
    speed : int
        Speaking rate in words per minute (espeak-ng's ``-s``; 175 is the default).
    """

    accent: str
    variant: str
    pitch: int
    speed: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"

    def __str__(self) -> str:
        return f"{self.voice} p{self.pitch} s{self.speed}"


def make_speakers(n: int, seed: int = 0) -> list[Speaker]:
    """``n`` distinct speakers, drawn reproducibly from accents × variants × pitch × speed.

    Accents are dealt round-robin (so every accent appears once ``n >= 8``); the variant,
    pitch (20..80) and speed (120..200 wpm) are drawn with ``numpy.random.default_rng(seed)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    out: list[Speaker] = []
    seen: set[tuple[str, str]] = set()
    while len(out) < n:
        accent = ACCENTS[len(out) % len(ACCENTS)]
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        pitch, speed = int(rng.integers(20, 81)), int(rng.integers(120, 201))
        if (accent, variant) in seen and len(seen) < len(ACCENTS) * len(VARIANTS):
            continue
        seen.add((accent, variant))
        out.append(Speaker(accent, variant, pitch, speed))
    return out


def _program() -> str:
    exe = os.environ.get("LABBENCH_ESPEAK") or shutil.which("espeak-ng")
    if not exe or not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        where = f"LABBENCH_ESPEAK={os.environ['LABBENCH_ESPEAK']!r} is not an executable file" \
            if os.environ.get("LABBENCH_ESPEAK") else "espeak-ng was not found on PATH"
        raise EspeakMissing(f"{where}; the spoken-digit task synthesises its utterances with it: {_INSTALL_HINT}")
    return exe


def espeak_version() -> str:
    """The first line of ``espeak-ng --version`` (part of the cache key)."""
    out = subprocess.run([_program(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[0].split("Data at")[0].strip()


def synthesize(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``speaker``; returns (samples as int16, sample rate in Hz)."""
    cmd = [_program(), "-v", speaker.voice, "-p", str(speaker.pitch), "-s", str(speaker.speed), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)!r} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return _parse_wav(proc.stdout, cmd)


def _parse_wav(data: bytes, cmd: list[str]) -> tuple[np.ndarray, int]:
    """16-bit mono PCM from the RIFF stream espeak-ng writes to stdout.

    espeak-ng writes the RIFF and data sizes as 0x7FFFFFFF when streaming, so the data
    chunk is taken to run to the end of the output rather than trusting its size field.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError(f"{' '.join(cmd)!r}: expected a RIFF/WAVE stream, got {data[:12]!r}")
    pos = 12
    rate = None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels = int.from_bytes(data[body:body + 2], "little"), int.from_bytes(data[body + 2:body + 4], "little")
            rate = int.from_bytes(data[body + 4:body + 8], "little")
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            if (fmt, channels, bits) != (1, 1, 16):
                raise RuntimeError(f"{' '.join(cmd)!r}: expected 16-bit mono PCM, got format {fmt}, "
                                   f"{channels} channels, {bits} bits")
        elif cid == b"data":
            if rate is None:
                raise RuntimeError(f"{' '.join(cmd)!r}: WAVE data chunk before its fmt chunk")
            raw = data[body:]
            return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").copy(), rate
        pos = body + size + (size & 1)
    raise RuntimeError(f"{' '.join(cmd)!r}: no WAVE data chunk in {len(data)} bytes of output")


def cache_dir() -> Path:
    """Where synthesised corpora are kept: ``$LABBENCH_CACHE_DIR`` or the user's cache directory."""
    root = os.environ.get("LABBENCH_CACHE_DIR")
    if root:
        return Path(root)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("labbench"))


def utterances(words: list[str], speakers: list[Speaker], repeats: int = 1,
               seed: int = 0) -> tuple[list[np.ndarray], int, np.ndarray]:
    """Every (speaker, repeat, word) utterance, synthesised once and then read from the cache.

    Repeats vary the speaker's pitch by up to ±4 and speed by up to ±10 wpm (drawn with
    ``seed``), as one person never says a word twice the same way.

    Returns
    -------
    audio : list of ndarray (int16)
        One array per utterance, in the order of ``index``.
    rate : int
        Sample rate (Hz).
    index : ndarray of shape (n, 3), int
        ``(speaker, repeat, word)`` of each utterance.
    """
    rng = np.random.default_rng(seed)
    jitter = [(int(rng.integers(-4, 5)), int(rng.integers(-10, 11))) if r else (0, 0)
              for _ in speakers for r in range(repeats)]
    index = np.array([(s, r, w) for s in range(len(speakers)) for r in range(repeats) for w in range(len(words))],
                     dtype=np.int64).reshape(-1, 3)
    key = {"version": espeak_version(), "words": words, "speakers": [asdict(s) for s in speakers],
           "repeats": repeats, "jitter": jitter}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "espeak" / f"{digest}.npz"
    if path.exists():
        with np.load(path) as z:
            samples, offsets, rate = z["samples"], z["offsets"], int(z["rate"])
        return [samples[a:b] for a, b in zip(offsets[:-1], offsets[1:])], rate, index
    def one(row: np.ndarray) -> tuple[np.ndarray, int]:
        s, r, w = (int(v) for v in row)
        (dp, ds), sp = jitter[s * repeats + r], speakers[s]
        return synthesize(words[w], Speaker(sp.accent, sp.variant, min(max(sp.pitch + dp, 0), 99), sp.speed + ds))

    # each utterance is its own espeak-ng process: run as many at once as there are cores
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        spoken = list(pool.map(one, index))
    audio, rate = [a for a, _ in spoken], spoken[0][1]
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in audio])])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, samples=np.concatenate(audio), offsets=offsets, rate=rate,
                        key=json.dumps(key))
    os.replace(tmp, path)   # atomic: concurrent builders never see half a file
    return audio, rate, index
