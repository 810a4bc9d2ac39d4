"""Word and character error rates between a reference and a transcript, ignoring case,
punctuation, how small numbers are written ("7" and "seven" are the same word, as in
Whisper's normalizer) and old spellings of the same word (Moonshine writes "to-night")."""

from __future__ import annotations

import re

import jiwer

_NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


# a word's old hyphenated spelling -> today's
_SPELLINGS = {"to-day": "today", "to-night": "tonight", "to-morrow": "tomorrow"}
_OLD_SPELLING = re.compile(r"\b(" + "|".join(map(re.escape, _SPELLINGS)) + r")\b")


def normalize(text: str) -> str:
    text = _OLD_SPELLING.sub(lambda m: _SPELLINGS[m.group(1)], text.lower())
    words = re.sub(r"[^\w\s']", " ", text).split()
    return " ".join(_NUMBERS[int(w)] if w.isdigit() and int(w) <= 20 else w for w in words)


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.wer(ref, hyp) if hyp else 1.0


def lost_words(reference: str, hypothesis: str) -> int:
    """Words of the reference the transcript leaves out (deletions): a cut-off beginning costs
    one per word, a misheard word none (that is a substitution)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not hyp:
        return len(ref.split())
    return jiwer.process_words(ref, hyp).deletions if ref else 0


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: a misspelt or wrongly split word costs a letter or two, not a
    word, so it tells a language's own engine from English relabelled even on robotic speech."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.cer(ref, hyp) if hyp else 1.0
