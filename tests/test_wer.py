"""The error rate the benchmarks and end-to-end tests score transcripts by."""

import pytest

from tools.wer import wer

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "said,heard,rate",
    [
        ("Send the report tonight.", "send the report to-night", 0.0),  # an old spelling
        ("A table for two at seven.", "A table for 2 at 7", 0.0),  # digits
        ("A table for two at seven.", "A cable for two at seven", 1 / 6),
        ("See you tomorrow.", "see you to morrow", 2 / 3),  # two words are not one
    ],
)
def test_transcripts_are_scored_by_their_words_not_their_spelling(said, heard, rate):
    assert wer(said, heard) == pytest.approx(rate)
