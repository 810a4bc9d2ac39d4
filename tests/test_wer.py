"""The error rate the benchmarks and end-to-end tests score transcripts by."""

import pytest

from tools.wer import lost_words, wer

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


@pytest.mark.parametrize(
    "said,heard,lost",
    [
        # a beginning cut off by the agent's speech (what tests/test_turns_overlap.py guards)
        ("Der Zug nach Hamburg fährt heute eine Stunde später ab.", "Und später ab.", 7),
        ("Please book a table for two at seven.", "book a table for two at seven", 1),
        # a misheard word is not a lost one
        ("Ich habe meinen Schlüssel im Auto vergessen.", "Ich habe meinen Schrußel im Auto.", 1),
        (
            "Ich habe meinen Schlüssel im Auto vergessen.",
            "Ich habe meinen Schrußel im Auto vergessen",
            0,
        ),
        ("A table for two.", "", 4),
    ],
)
def test_lost_words_count_what_the_transcript_leaves_out(said, heard, lost):
    assert lost_words(said, heard) == lost
