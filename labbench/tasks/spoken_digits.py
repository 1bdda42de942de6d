"""Spoken digits: "zero" … "nine" said by synthetic speakers, classified speaker-independently.

The classic liquid-state-machine benchmark (Verstraeten, Schrauwen, Stroobandt & Van
Campenhout 2005, on TI46) with the corpus synthesised by ``espeak-ng``
(:mod:`labbench.tasks.espeak`): ``n_speakers`` speakers (accent × voice variant × pitch ×
speaking rate) each say every digit ``repeats`` times. The split is by speaker: the test
rows only hold utterances of ``n_test_speakers`` speakers whose voices never occur in
training, so the score measures generalisation to new voices, not memory of them.

Each utterance is trimmed of silence and turned into a log-mel filterbank
(:mod:`labbench.tasks.filterbank`), one row per ``hop_ms`` frame; each frame's
energies are scaled to [0, 1] over the top ``dynamic_range_db`` of the utterance (so
loudness does not identify a speaker), zero-padded to ``present`` rows and followed by
``rest`` rows of silence. A 10 ms hop is 10 ms of biological time per row on the LSM at
its default ``dt × steps_per_sample``.

``digits`` keeps a subset of the words (e.g. ``[0, 1]``: Fernando & Sojakka's "zero" /
"one" in a bucket of water); the class labels stay the digits themselves.
``encoding = "bands"`` gives ``n_bands`` band envelopes instead of ``n_mels`` channels (one per
motor of a physical reservoir: the same mel filterbank with ``n_bands`` bands, each frame's
window at least one hop long so no sound falls between rows, scaled to [0, 1] the same way).
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from labbench.tasks.espeak import make_speakers, utterances
from labbench.tasks.filterbank import log_mel, trim_silence
from labbench.tasks.sequences import SequenceClassification

__all__ = ["WORDS", "SpokenDigits"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@cache
def _corpus(n_speakers: int, speaker_seed: int, repeats: int, n_mels: int, hop_ms: float,
            dynamic_range_db: float, present: int, frame_ms: float = 25.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Features ``(n_utterances, present, n_mels)``, index ``(speaker, repeat, word)`` and the
    number of utterances longer than ``present`` frames (truncated)."""
    speakers = make_speakers(n_speakers, speaker_seed)
    audio, rate, index = utterances(list(WORDS), speakers, repeats=repeats, seed=speaker_seed)
    feats = np.zeros((len(audio), present, n_mels), dtype=np.float64)
    truncated = 0
    for i, a in enumerate(audio):
        db = log_mel(trim_silence(a, rate), rate, n_mels=n_mels, frame_ms=frame_ms, hop_ms=hop_ms)
        x = np.clip((db - (db.max() - dynamic_range_db)) / dynamic_range_db, 0.0, 1.0)
        truncated += len(x) > present
        feats[i, : min(len(x), present)] = x[:present]
    return feats, index, truncated


class SpokenDigits(SequenceClassification):
    """Ten spoken digits, synthesised by espeak-ng, with a speaker-independent split.

    Parameters
    ----------
    n_speakers : int
        Synthetic speakers in the corpus.
    n_test_speakers : int
        Speakers held out for the test phase (chosen by ``split_seed``).
    repeats : int
        Times each speaker says each digit (pitch and rate vary slightly between repeats).
    n_mels : int
        Mel filterbank channels (the task's input channels).
    hop_ms : float
        Time between filterbank frames, i.e. per row (25 ms frames).
    dynamic_range_db : float
        Range of each utterance's log-mel energies mapped onto [0, 1].
    present : int
        Rows per utterance (longer utterances are cut, with a warning).
    rest : int
        Rows of silence after each utterance.
    split_seed, speaker_seed : int
        Seeds of the speaker split and of the speakers' voices.
    digits : list of int, optional
        The digits kept (default all ten); labels are the digits themselves.
    encoding : {"log_mel", "bands"}
        ``n_mels`` log-mel channels, or ``n_bands`` band envelopes (windows at least one hop long).
    n_bands : int
        Band envelopes of the ``"bands"`` encoding (e.g. one per motor of a bucket).
    """

    name: Literal["spoken_digits"] = "spoken_digits"
    n_speakers: int = Field(40, ge=2, le=128, description="synthetic speakers")
    n_test_speakers: int = Field(10, ge=1, description="speakers held out for testing")
    repeats: int = Field(3, ge=1, le=20, description="utterances of each digit per speaker")
    n_mels: int = Field(32, ge=2, le=128, description="mel filterbank channels")
    hop_ms: float = Field(10.0, ge=1.0, le=100.0, description="ms of speech per row")
    dynamic_range_db: float = Field(60.0, gt=0, le=120, description="dB range scaled onto [0, 1]")
    present: int = Field(80, ge=1, le=10_000, description="rows per utterance (zero-padded)")
    rest: int = Field(20, ge=0, le=10_000, description="rows of silence after each utterance")
    split_seed: int = Field(0, ge=0, description="seed of the speaker split")
    speaker_seed: int = Field(0, ge=0, description="seed of the speakers' voices")
    digits: list[int] | None = Field(None, description="the digits kept (default: all ten)")
    encoding: Literal["log_mel", "bands"] = Field("log_mel", description="log_mel: n_mels channels; bands: "
                                                  "n_bands band envelopes (e.g. one per motor)")
    n_bands: int = Field(4, ge=1, le=64, description="band envelopes of the 'bands' encoding")

    sample_noun: ClassVar[str] = "utterance"

    @model_validator(mode="after")
    def _check_split(self) -> SpokenDigits:
        if self.n_test_speakers >= self.n_speakers:
            raise ValueError(f"n_test_speakers = {self.n_test_speakers} leaves no training speaker "
                             f"(n_speakers = {self.n_speakers})")
        if self.digits is not None and (len(self.digits) < 2 or len(set(self.digits)) != len(self.digits)
                                        or not all(0 <= d < len(WORDS) for d in self.digits)):
            raise ValueError(f"digits {self.digits}: at least two different digits from 0..9")
        return self

    @property
    def kept(self) -> list[int]:
        """The digits in the corpus (``digits``, or all ten), in increasing order."""
        return sorted(self.digits) if self.digits is not None else list(range(len(WORDS)))

    def _rows_of(self) -> np.ndarray:
        """Index (into the ten-word corpus) of each kept utterance, in (speaker, repeat, digit) order."""
        word = np.tile(np.arange(len(WORDS)), self.n_speakers * self.repeats)
        return np.flatnonzero(np.isin(word, self.kept))

    @property
    def n_inputs(self) -> int:
        return self.n_mels if self.encoding == "log_mel" else self.n_bands

    @property
    def classes(self) -> list[int]:
        return self.kept

    @property
    def n_utterances(self) -> int:
        return self.n_speakers * self.repeats * len(self.kept)

    def test_speakers(self) -> np.ndarray:
        """Indices of the held-out speakers."""
        return np.random.default_rng(self.split_seed).permutation(self.n_speakers)[-self.n_test_speakers:]

    def speaker_of(self) -> np.ndarray:
        """Speaker index of every utterance, shape (n_utterances,)."""
        return np.repeat(np.arange(self.n_speakers), self.repeats * len(self.kept))

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        held = np.isin(self.speaker_of(), self.test_speakers())
        rng = np.random.default_rng(self.split_seed)
        return np.flatnonzero(~held), rng.permutation(np.flatnonzero(held))

    def _held_out_setting(self) -> str:
        return (f"task.n_test_speakers = {self.n_test_speakers} × {len(self.kept)} digits × "
                f"task.repeats = {self.repeats}")

    def labels(self) -> np.ndarray:
        return np.tile(np.asarray(self.kept), self.n_speakers * self.repeats)

    def features(self) -> np.ndarray:
        """Every utterance's rows, shape ``(n_utterances, present, n_inputs)`` (synthesised on first use)."""
        if self.encoding == "log_mel":
            feats, _, truncated = _corpus(self.n_speakers, self.speaker_seed, self.repeats, self.n_mels,
                                          self.hop_ms, self.dynamic_range_db, self.present)
        else:
            feats, _, truncated = _corpus(self.n_speakers, self.speaker_seed, self.repeats, self.n_bands,
                                          self.hop_ms, self.dynamic_range_db, self.present,
                                          max(25.0, self.hop_ms))
        if self.digits is not None:
            feats = feats[self._rows_of()]
        if truncated:
            warnings.warn(f"task spoken_digits: {truncated} of {len(feats)} utterances are longer than "
                          f"present = {self.present} rows of {self.hop_ms} ms and were cut; raise task.present",
                          stacklevel=2)
        return feats

    def sample_rows(self, order: np.ndarray) -> np.ndarray:
        return self.features()[order].reshape(-1, self.n_inputs)
