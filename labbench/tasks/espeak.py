"""Speech synthesis with the espeak-ng library from the ``espeakng-loader`` wheel, cached on disk.

eSpeak NG is a formant synthesiser (its English voices descend from Klatt's cascade-
parallel synthesiser, Klatt 1980). Changing the accent, the voice variant, the pitch and
the speaking rate gives recognisably different "speakers" of the same words, which is what
the ``spoken_digits`` task needs for a speaker-independent split without a licensed
corpus such as TI46.

No system package is needed: the ``espeakng-loader`` wheel (pinned in ``pyproject.toml``)
ships ``libespeak-ng.so`` and its ``espeak-ng-data``, and this module drives the library
through :mod:`ctypes`. Two things keep a corpus bit-identical from machine to machine:

- the library keeps state from one utterance to the next (filter memories, pitch phase,
  its random generator, which 1.52 seeds from the clock), so every utterance is spoken by a
  child forked from a helper process in which the library has just been initialised, with
  its random generator seeded with :data:`RAND_SEED`: an utterance is the same whatever was
  spoken before it, in whichever order and on however many cores;
- the library's version (``espeak_Info``) is part of the cache key, so a different
  espeak-ng never reuses (or silently mixes with) a corpus made by another one.

Nothing here is imported by the rest of labbench unless a speech task is used;
:class:`EspeakMissing` is raised, in one line naming the library and the fix, when the
library cannot be loaded. Forking needs a POSIX system (Linux, macOS).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["ESPEAK_NG_VERSION", "EspeakMissing", "RAND_SEED", "Speaker", "cache_dir", "espeak_version",
           "library_paths", "make_speakers", "synthesize", "synthesize_many", "utterances"]

#: the espeak-ng version that ``espeakng-loader==0.2.4`` ships (the corpus hashes in the tests are for it)
ESPEAK_NG_VERSION = "1.52.0"
#: seed of espeak-ng's random generator (noise of the Klatt and breathy voices) for every utterance
RAND_SEED = 0

#: the eight English accents that ship with espeak-ng's own data (no MBROLA needed)
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
#: voice variants (``!v/<name>`` in espeak-ng-data): formant, breathiness and synthesiser choices
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4")

_FIX = "reinstall it with `pip install espeakng-loader==0.2.4` (a dependency of labbench)"


class EspeakMissing(RuntimeError):
    """The espeak-ng library (from the ``espeakng-loader`` wheel) cannot be loaded."""


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


def library_paths() -> tuple[Path, Path]:
    """``(libespeak-ng shared library, espeak-ng-data directory)`` shipped by ``espeakng-loader``.

    Raises
    ------
    EspeakMissing
        ``espeakng-loader`` is not installed, or its library or data are not where it says.
    """
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EspeakMissing(f"the spoken-digit task needs the espeak-ng library from the espeakng-loader "
                            f"wheel, which is not installed ({exc}); {_FIX}") from None
    lib = Path(espeakng_loader.get_library_path())
    data = Path(espeakng_loader.__file__).parent / "espeak-ng-data"
    for path in (lib, data / "phontab"):
        if not path.exists():
            raise EspeakMissing(f"{path}: missing from the espeakng-loader wheel; {_FIX}")
    return lib, data


def _load(lib_path: Path) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(str(lib_path))
    except OSError as exc:
        raise EspeakMissing(f"{lib_path}: the espeak-ng library does not load ({exc}); {_FIX}") from None


def espeak_version() -> str:
    """The espeak-ng library's version, e.g. ``"1.52.0"`` (part of the cache key)."""
    lib = _load(library_paths()[0])
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    return lib.espeak_Info(None).decode()


def synthesize(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``speaker``; returns (samples as int16, sample rate in Hz)."""
    audio, rate = synthesize_many([(text, speaker)])
    return audio[0], rate


def synthesize_many(jobs: list[tuple[str, Speaker]], processes: int | None = None) -> tuple[list[np.ndarray], int]:
    """Speak each ``(text, speaker)``, each from a freshly initialised library.

    Parameters
    ----------
    jobs : list of (str, Speaker)
    processes : int, optional
        Utterances synthesised at once (default: the number of cores). The result does not
        depend on it.

    Returns
    -------
    audio : list of ndarray (int16)
        One array per job, in order.
    rate : int
        Sample rate (Hz).
    """
    lib, data = library_paths()
    if not jobs:
        return [], 0
    spec = [{"text": t, "voice": s.voice, "pitch": s.pitch, "speed": s.speed} for t, s in jobs]
    with tempfile.TemporaryDirectory(prefix="labbench-espeak-") as tmp:
        # -I: the helper sees neither the caller's environment variables nor this directory
        cmd = [sys.executable, "-I", __file__, "--serve", str(lib), str(data.parent), tmp,
               str(max(1, processes or os.cpu_count() or 1))]
        proc = subprocess.run(cmd, input=json.dumps(spec), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            if msg.startswith("espeak-missing: "):
                raise EspeakMissing(msg.removeprefix("espeak-missing: ") + f"; {_FIX}")
            raise RuntimeError(f"espeak-ng synthesis failed: {msg}")
        rate = int(json.loads(proc.stdout)["rate"])
        audio = [np.fromfile(Path(tmp) / f"{i}.pcm", dtype="<i2") for i in range(len(spec))]
    return audio, rate


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
    key = {"engine": "libespeak-ng", "version": espeak_version(), "rand_seed": RAND_SEED, "words": words,
           "speakers": [asdict(s) for s in speakers], "repeats": repeats, "jitter": jitter}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "espeak" / f"{digest}.npz"
    if path.exists():
        with np.load(path) as z:
            samples, offsets, rate = z["samples"], z["offsets"], int(z["rate"])
        return [samples[a:b] for a, b in zip(offsets[:-1], offsets[1:])], rate, index
    jobs = []
    for s, r, w in index.tolist():
        (dp, ds), sp = jitter[s * repeats + r], speakers[s]
        jobs.append((words[w], Speaker(sp.accent, sp.variant, min(max(sp.pitch + dp, 0), 99), sp.speed + ds)))
    audio, rate = synthesize_many(jobs)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in audio])])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, samples=np.concatenate(audio), offsets=offsets, rate=rate,
                        key=json.dumps(key))
    os.replace(tmp, path)   # atomic: concurrent builders never see half a file
    return audio, rate, index


# -- the helper process (``python -I espeak.py --serve ...``; standard library only) ---------------------

class _Voice(ctypes.Structure):
    """espeak-ng's ``espeak_VOICE`` (speak_lib.h)."""

    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_RATE, _PITCH = 1, 3                  # espeak_PARAMETER
_POS_CHARACTER = 1
_SYNTH_FLAGS = 0x100 | 0x1000         # espeakPHONEMES | espeakENDPAUSE, as the espeak-ng program
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _speak_one(lib: ctypes.CDLL, job: dict, out: Path) -> None:
    """In a forked child: speak one job into ``out`` (raw little-endian int16)."""
    chunks: list[bytes] = []

    def collect(wav, n, events):  # noqa: ANN001 - ctypes callback
        if n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    callback = _SynthCallback(collect)
    lib.espeak_SetSynthCallback(callback)
    voice = job["voice"].encode()
    if lib.espeak_SetVoiceByName(voice) != 0:
        # as the espeak-ng program does: a language name ("en-gb+f3") selects by properties
        if lib.espeak_SetVoiceByProperties(ctypes.byref(_Voice(languages=voice))) != 0:
            raise ValueError(f"espeak-ng has no voice {job['voice']!r}")
    lib.espeak_SetParameter(_RATE, int(job["speed"]), 0)
    lib.espeak_SetParameter(_PITCH, int(job["pitch"]), 0)
    lib.espeak_ng_SetRandSeed(ctypes.c_long(RAND_SEED))
    text = job["text"].encode()
    status = lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _SYNTH_FLAGS, None, None)
    if status != 0 or lib.espeak_Synchronize() != 0:
        raise RuntimeError(f"espeak_Synth({job['text']!r}) returned status {status}")
    out.write_bytes(b"".join(chunks))


def _serve(lib_path: str, data_parent: str, out_dir: str, processes: int) -> int:
    """Initialise the library once, then fork one child per utterance (JSON list on stdin)."""
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as exc:
        print(f"espeak-missing: {lib_path}: the espeak-ng library does not load ({exc})", file=sys.stderr)
        return 3
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), _INITIALIZE_DONT_EXIT)
    if rate <= 0:
        print(f"espeak-missing: {data_parent}/espeak-ng-data: espeak-ng failed to initialise "
              f"(status {rate})", file=sys.stderr)
        return 3
    jobs = json.load(sys.stdin)
    sys.stdout.flush()
    running: dict[int, int] = {}
    failed: list[str] = []
    out = Path(out_dir)

    def reap() -> None:
        pid, status = os.wait()
        i = running.pop(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            err = out / f"{i}.err"
            failed.append(err.read_text().strip() if err.exists() else f"utterance {i}: child died ({status})")

    for i, job in enumerate(jobs):
        while len(running) >= processes:
            reap()
        pid = os.fork()
        if pid == 0:   # the child: the library exactly as just initialised
            code = 0
            try:
                _speak_one(lib, job, out / f"{i}.pcm")
            except BaseException as exc:  # noqa: BLE001 - reported through the file, then exit
                (out / f"{i}.err").write_text(f"{job['text']!r} by {job['voice']}: {exc}")
                code = 1
            os._exit(code)
        running[pid] = i
    while running:
        reap()
    if failed:
        print(f"{len(failed)} of {len(jobs)} utterances failed; first: {failed[0]}", file=sys.stderr)
        return 1
    print(json.dumps({"rate": rate}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--serve":
        sys.exit(_serve(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    sys.exit("usage: espeak.py --serve LIBRARY DATA_PARENT OUT_DIR PROCESSES (used by labbench.tasks.espeak)")
