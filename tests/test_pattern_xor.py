"""The pattern XOR task (Fernando & Sojakka's bucket XOR): trials, balance, layout, scoring."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from labbench.tasks import SpokenDigits, get_task


def test_trials_hold_two_bits_and_the_target_is_their_xor():
    task = get_task("pattern_xor", hold=5, settle=2)
    d = task.generate(40 * 5, seed=3)
    trials = d.inputs.reshape(40, 5, 2)
    assert (trials == trials[:, :1]).all()                          # held for the whole trial
    bits = trials[:, 0].astype(int)
    np.testing.assert_array_equal(d.targets.reshape(40, 5)[:, 0], bits[:, 0] ^ bits[:, 1])
    counts = np.bincount(bits[:, 0] * 2 + bits[:, 1], minlength=4)
    assert (counts == 10).all()                                     # shuffled groups of the 4 conditions
    assert task.check_layout(10, 400, 200) == []
    assert task.check_layout(12, 400, 200) == [("run.washout: 12 rows is not a whole number of trials "
                                                "(each takes task.hold = 5 rows); use 10 or 15")]
    with pytest.raises(ValidationError, match="settle"):
        get_task("pattern_xor", hold=5, settle=5)


def test_a_trial_is_scored_on_its_rows_after_settle():
    task = get_task("pattern_xor", hold=4, settle=2)
    y = np.repeat([1.0, 0.0, 1.0], 4)
    # trial 0: wrong on the settle rows only; trial 1: right on average, one row wrong;
    # trial 2: wrong after settle
    p = np.array([0, 0, 0.9, 0.8,   0.1, 0.1, 0.7, 0.1,   1, 1, 0.2, 0.4])
    s = task.score(y, p)
    assert s["accuracy"] == pytest.approx(2 / 3) and s["trials"] == 3
    assert s["row_accuracy"] == pytest.approx(3 / 6)
    assert task.score(y[:3], p[:3])["trials"] == 0                  # no whole trial yet


def test_spoken_digit_subset_and_band_envelopes():
    task = SpokenDigits(n_speakers=3, n_test_speakers=1, repeats=1, digits=[1, 0], encoding="bands", n_bands=4,
                        hop_ms=40.0, present=20, rest=0)
    assert task.n_inputs == 4 and task.classes == [0, 1] and task.n_utterances == 6
    feats = task.features()
    assert feats.shape == (6, 20, 4) and 0.0 <= feats.min() and feats.max() <= 1.0 and feats.max() > 0.5
    np.testing.assert_array_equal(task.labels(), [0, 1] * 3)
    with pytest.raises(ValidationError, match="digits"):
        SpokenDigits(digits=[3])
