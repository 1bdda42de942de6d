"""Spoken digits: the espeak-ng corpus, the log-mel front end, the speaker split, and the
LSM classifying voices it never heard (the task of Verstraeten et al. 2005)."""

import shutil

import numpy as np
import pytest

from labbench.spec.protocol import ProtocolError, load
from labbench.reservoir import get_driver
from labbench.readouts.pooling import pool_sequences
from labbench.tasks import SpokenDigits
from labbench.tasks import espeak
from labbench.tasks.filterbank import hz_to_mel, log_mel, mel_filterbank, mel_to_hz, trim_silence
from conftest import PROTOCOLS

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (sudo apt-get install espeak-ng); .ci/run installs it")


# -- front end ------------------------------------------------------------------------

def test_mel_scale_round_trips_and_matches_its_definition():
    f = np.array([0.0, 700.0, 1000.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(f)), f)
    assert hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))


def test_filterbank_triangles_peak_at_one_and_cover_the_band():
    fb = mel_filterbank(20, 512, 16000, fmin=100, fmax=7000)
    assert fb.shape == (20, 257) and fb.min() >= 0 and np.allclose(fb.max(axis=1), 1, atol=0.15)
    freqs = np.fft.rfftfreq(512, 1 / 16000)
    assert not fb[:, (freqs < 100) | (freqs > 7000)].any()
    assert (fb[:, (freqs > 150) & (freqs < 6800)].sum(axis=0) > 0).all()   # no gaps inside the band


@pytest.mark.parametrize("tone", [300.0, 1000.0, 3000.0])
def test_a_pure_tone_lights_the_filter_centred_on_it(tone):
    rate, n_mels = 16000, 32
    x = np.sin(2 * np.pi * tone * np.arange(rate) / rate)
    spec = log_mel(x, rate, n_mels=n_mels, fmin=50, hop_ms=10)
    assert spec.shape == (99, n_mels)            # 1 s at 10 ms hops, 25 ms frames
    centres = mel_to_hz(np.linspace(hz_to_mel(50), hz_to_mel(rate / 2), n_mels + 2))[1:-1]
    assert abs(centres[spec.mean(axis=0).argmax()] - tone) < 0.15 * tone


def test_trim_silence_keeps_the_sound_only():
    rate = 16000
    x = np.concatenate([np.zeros(3200), np.sin(np.arange(8000) * 0.3), np.zeros(4800)])
    y = trim_silence(x, rate)
    assert 8000 <= len(y) <= 8000 + 2 * 160 and np.abs(y[:160]).max() > 0.5
    assert len(trim_silence(np.zeros(1000), rate)) == 0


# -- espeak-ng --------------------------------------------------------------------------

def test_streamed_wav_with_bogus_sizes_is_parsed():
    samples = np.array([0, 1000, -1000, 32767], dtype="<i2")
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
           + (22050).to_bytes(4, "little") + (44100).to_bytes(4, "little") + (2).to_bytes(2, "little")
           + (16).to_bytes(2, "little"))
    wav = b"RIFF" + b"\xff\xff\xff\x7f" + b"WAVE" + fmt + b"data" + b"\xff\xff\xff\x7f" + samples.tobytes()
    out, rate = espeak._parse_wav(wav, ["espeak-ng"])
    assert rate == 22050 and np.array_equal(out, samples)
    with pytest.raises(RuntimeError, match="expected a RIFF/WAVE stream, got b'garbage"):
        espeak._parse_wav(b"garbage bytes...", ["espeak-ng"])


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("LABBENCH_ESPEAK", raising=False)
    with pytest.raises(espeak.EspeakMissing, match=r"espeak-ng was not found on PATH.*apt-get install espeak-ng"):
        espeak.synthesize("one", espeak.make_speakers(1)[0])
    monkeypatch.setenv("LABBENCH_ESPEAK", "/nonexistent/espeak-ng")
    with pytest.raises(espeak.EspeakMissing, match="LABBENCH_ESPEAK='/nonexistent/espeak-ng' is not an executable"):
        espeak.espeak_version()


def test_speakers_are_reproducible_and_distinct():
    a, b = espeak.make_speakers(40, seed=0), espeak.make_speakers(40, seed=0)
    assert a == b and a != espeak.make_speakers(40, seed=1)
    assert len({(s.accent, s.variant) for s in a}) == 40
    assert {s.accent for s in a} == set(espeak.ACCENTS)
    assert all(20 <= s.pitch <= 80 and 120 <= s.speed <= 200 for s in a)


@needs_espeak
def test_corpus_is_synthesised_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABBENCH_CACHE_DIR", str(tmp_path))
    speakers = espeak.make_speakers(2, seed=3)
    audio, rate, index = espeak.utterances(["one", "seven"], speakers, repeats=2, seed=3)
    assert rate == 22050 and len(audio) == 8 and index.tolist()[:3] == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert all(a.dtype == np.int16 and len(a) > rate // 10 and np.abs(a).max() > 1000 for a in audio)
    assert len(list((tmp_path / "espeak").glob("*.npz"))) == 1

    def no_synthesis(*args):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(espeak, "synthesize", no_synthesis)
    again, _, _ = espeak.utterances(["one", "seven"], speakers, repeats=2, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(audio, again))


# -- the task ---------------------------------------------------------------------------

def test_split_is_by_speaker():
    task = SpokenDigits(n_speakers=12, n_test_speakers=4, repeats=2)
    train, test = task.split()
    spk = task.speaker_of()
    assert len(train) == 8 * 20 and len(test) == 4 * 20
    assert not set(spk[train]) & set(spk[test]) and set(spk[test]) == set(task.test_speakers())
    assert np.bincount(task.labels()[test]).tolist() == [8] * 10   # every digit, every test speaker, twice


def test_layout_errors_name_the_speaker_setting():
    with pytest.raises(ProtocolError) as err:
        load(PROTOCOLS / "spoken_digits_lsm.toml", ["run.test=30050", "task.n_test_speakers=2"])
    msg = str(err.value)
    assert "run.test: 30050 rows is not a whole number of utterances (each takes 100 rows" in msg
    with pytest.raises(ProtocolError, match=r"only 60 are held out \(task.n_test_speakers = 2"):
        load(PROTOCOLS / "spoken_digits_lsm.toml", ["task.n_test_speakers=2"])
    with pytest.raises(ProtocolError, match="n_test_speakers = 40 leaves no training speaker"):
        load(PROTOCOLS / "spoken_digits_lsm.toml", ["task.n_test_speakers=40"])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """12 speakers (8 train, 4 test) saying each digit once, as a run's data."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng); .ci/run installs it")
    mp = pytest.MonkeyPatch()
    mp.setenv("LABBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    task = SpokenDigits(n_speakers=12, n_test_speakers=4, repeats=1)
    L = task.sequence_length
    data = task.generate_run(0, 80 * L, 40 * L, seed=0)
    mp.undo()
    return task, data


def _speaker_independent_accuracy(X, data, n_train=80):
    from sklearn.linear_model import RidgeClassifier

    pooled, ids = pool_sequences(X, data.sequence, "slices", 4)
    y = np.array([data.targets[data.sequence == i][0, 0] for i in ids])
    train = ids < n_train
    return float((RidgeClassifier(alpha=1.0).fit(pooled[train], y[train]).predict(pooled[~train]) == y[~train]).mean())


def test_rows_are_scaled_filterbank_frames_then_silence(small_run):
    task, data = small_run
    L, P = task.sequence_length, task.present
    assert data.inputs.shape == (120 * L, 32) and data.inputs.min() >= 0 and data.inputs.max() == 1
    rows = data.inputs.reshape(120, L, 32)
    assert not rows[:, P:].any()                                   # rest rows are silent
    assert (rows.max(axis=(1, 2)) == 1).all()                      # each utterance's loudest bin is 1
    assert (rows[:, 0].max(axis=1) > 0.3).all()                    # silence trimmed: speech from row 0
    test_ids = np.unique(data.sequence[80 * L:][data.sequence[80 * L:] >= 0])
    assert len(test_ids) == 40 and np.isnan(data.targets[data.sequence < 0]).all()


def test_lsm_recognises_digits_of_unheard_speakers(small_run):
    """Chance is 0.1; the full protocol (900/300 utterances, N=500) reaches 0.99 (docs/protocols.md)."""
    task, data = small_run
    lsm = get_driver("lsm")(units=200, n_inputs=task.n_inputs, seed=0)
    lsm.open()
    block = lsm.run(data.inputs)
    assert not lsm.health()
    assert _speaker_independent_accuracy(block.features, data) >= 0.8
