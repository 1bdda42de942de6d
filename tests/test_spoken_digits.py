"""Spoken digits: the espeak-ng corpus, the log-mel front end, the speaker split, and the
LSM classifying voices it never heard (the task of Verstraeten et al. 2005)."""

import hashlib
import sys

import numpy as np
import pytest

from labbench.spec.protocol import ProtocolError, load
from labbench.reservoir import get_driver
from labbench.readouts.pooling import pool_sequences
from labbench.tasks import SpokenDigits
from labbench.tasks import espeak
from labbench.tasks.filterbank import hz_to_mel, log_mel, mel_filterbank, mel_to_hz, trim_silence
from conftest import PROTOCOLS


def _corpus_sha256(audio):
    """sha256 over every utterance's length and int16 samples, in order."""
    h = hashlib.sha256()
    for a in audio:
        h.update(len(a).to_bytes(8, "little"))
        h.update(a.astype("<i2").tobytes())
    return h.hexdigest()


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

def test_missing_library_is_a_clear_error(monkeypatch, tmp_path):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(tmp_path / "libespeak-ng.so"))
    with pytest.raises(espeak.EspeakMissing, match=r"libespeak-ng.so: missing from the espeakng-loader wheel; "
                                                   r"reinstall it with `pip install espeakng-loader==0.2.4`"):
        espeak.synthesize("one", espeak.make_speakers(1)[0])
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)     # not installed at all
    with pytest.raises(espeak.EspeakMissing, match=r"espeakng-loader wheel, which is not installed"):
        espeak.espeak_version()


def test_the_pinned_library_ships_with_the_wheel():
    lib, data = espeak.library_paths()
    assert lib.name.startswith("libespeak-ng") and (data / "phontab").is_file()
    assert espeak.espeak_version() == espeak.ESPEAK_NG_VERSION, (
        "the espeak-ng library is not the pinned version: the corpus hashes below are for "
        f"{espeak.ESPEAK_NG_VERSION} (espeakng-loader==0.2.4)")


#: sha256 of single utterances as espeak-ng 1.52.0 (espeakng-loader 0.2.4) speaks them (a Klatt, a
#: male and a female variant)
UTTERANCES = [
    ("seven", espeak.Speaker("en-gb-scotland", "klatt2", 40, 150), 19930,
     "29441e961b9d79dd85178a6fa24a4adfd432cfc9433bdb10fb233c19623e96d9"),
    ("nine", espeak.Speaker("en-029", "m3", 30, 130), 22121,
     "94a21b5b97d5f345f9a3d80a7ec5ee478a7221bfa6861c1fa312d597a7ccd7ef"),
    ("three", espeak.Speaker("en-us", "f3", 60, 170), 14389,
     "9d373d488d8030582b12a3f9c39fa16e450f292b1b5c3aa213318d2e387e4317"),
]


def test_utterances_are_bit_identical_whatever_came_before():
    """Each utterance equals its recorded hash, alone or in a batch, in any order, on 1 or 2 cores:
    the library's state (and its clock-seeded random generator) never leaks between utterances."""
    jobs = [(text, speaker) for text, speaker, _, _ in UTTERANCES]
    alone = [espeak.synthesize(text, speaker) for text, speaker in jobs]
    assert {rate for _, rate in alone} == {22050}
    for (audio, _), (text, speaker, n, sha) in zip(alone, UTTERANCES):
        assert audio.dtype == np.int16 and len(audio) == n, (text, str(speaker), len(audio))
        assert hashlib.sha256(audio.astype("<i2").tobytes()).hexdigest() == sha, (text, str(speaker))
    batch, _ = espeak.synthesize_many(jobs * 2, processes=2)            # twice each, two at a time
    backwards, _ = espeak.synthesize_many(jobs[::-1], processes=1)
    for i, (audio, _) in enumerate(alone):
        assert np.array_equal(batch[i], audio) and np.array_equal(batch[i + len(jobs)], audio)
        assert np.array_equal(backwards[len(jobs) - 1 - i], audio)


def test_an_unknown_voice_is_named():
    with pytest.raises(RuntimeError, match=r"espeak-ng has no voice 'xx-nowhere\+m1'"):
        espeak.synthesize("one", espeak.Speaker("xx-nowhere", "m1", 50, 175))


def test_speakers_are_reproducible_and_distinct():
    a, b = espeak.make_speakers(40, seed=0), espeak.make_speakers(40, seed=0)
    assert a == b and a != espeak.make_speakers(40, seed=1)
    assert len({(s.accent, s.variant) for s in a}) == 40
    assert {s.accent for s in a} == set(espeak.ACCENTS)
    assert all(20 <= s.pitch <= 80 and 120 <= s.speed <= 200 for s in a)


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
def corpus_cache(tmp_path_factory):
    """A cache directory shared by the tests that use the 12-speaker corpus (synthesised once)."""
    return tmp_path_factory.mktemp("cache")


#: sha256 (see _corpus_sha256) of the 12-speaker corpus below, spoken by espeak-ng 1.52.0
CORPUS_12_SHA256 = "40b87e8e82e3323d8b5f4c775d85b5d00c2551666355e7e9441b81273a8ccf3a"


def test_the_corpus_is_bit_identical_on_every_machine(corpus_cache, monkeypatch):
    """The 120 utterances of 12 speakers (as SpokenDigits(n_speakers=12, repeats=1) asks for them)
    hash to the recorded value; the default 1200-utterance corpus hashes to
    3d3efab47dce643699f151f9f131cda908845916f54ea349506bb35c33c24b15 (docs/platform.md)."""
    from labbench.tasks.spoken_digits import WORDS

    monkeypatch.setenv("LABBENCH_CACHE_DIR", str(corpus_cache))
    audio, rate, _ = espeak.utterances(list(WORDS), espeak.make_speakers(12, seed=0), repeats=1, seed=0)
    assert rate == 22050 and len(audio) == 120
    assert _corpus_sha256(audio) == CORPUS_12_SHA256


@pytest.fixture(scope="module")
def small_run(corpus_cache):
    """12 speakers (8 train, 4 test) saying each digit once, as a run's data."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LABBENCH_CACHE_DIR", str(corpus_cache))
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
