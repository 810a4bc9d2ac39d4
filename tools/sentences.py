"""Everyday sentences in English, German, Spanish and French (the same eight in each), spoken
by espeak-ng's voice for the language: the same kind of synthesized speech in every language,
made on the spot, for the language tests and benchmarks/languages.py. (Robotic: a human
speaker is understood better, so WER measured on it is pessimistic.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.audio import ENGINE_RATE, resample

from .caller import SAMPLE_RATE, synthesize

SENTENCES = {
    "en": (
        "Good morning, I would like a table for two people tonight.",
        "How far is the train station from here?",
        "The weather is very nice today.",
        "I would like a cup of coffee with milk.",
        "The meeting has been moved to Thursday morning.",
        "Can you call my sister tomorrow?",
        "My flight leaves at half past nine.",
        "We need more chairs for the party.",
    ),
    "de": (
        "Guten Morgen, ich hätte gerne einen Tisch für zwei Personen heute Abend.",
        "Wie weit ist der Bahnhof von hier entfernt?",
        "Das Wetter ist heute sehr schön.",
        "Ich möchte eine Tasse Kaffee mit Milch.",
        "Die Besprechung wurde auf Donnerstagmorgen verschoben.",
        "Kannst du morgen meine Schwester anrufen?",
        "Mein Flug geht um halb zehn.",
        "Wir brauchen mehr Stühle für die Feier.",
    ),
    "es": (
        "Buenos días, quisiera una mesa para dos personas esta noche.",
        "¿A qué distancia está la estación de tren?",
        "Hoy hace muy buen tiempo.",
        "Quisiera una taza de café con leche.",
        "La reunión se ha cambiado al jueves por la mañana.",
        "¿Puedes llamar a mi hermana mañana?",
        "Mi vuelo sale a las nueve y media.",
        "Necesitamos más sillas para la fiesta.",
    ),
    "fr": (
        "Bonjour, je voudrais une table pour deux personnes ce soir.",
        "À quelle distance se trouve la gare ?",
        "Il fait très beau aujourd'hui.",
        "Je voudrais une tasse de café au lait.",
        "La réunion a été déplacée à jeudi matin.",
        "Peux-tu appeler ma sœur demain ?",
        "Mon vol part à neuf heures et demie.",
        "Nous avons besoin de plus de chaises pour la fête.",
    ),
}
LANGUAGES = tuple(SENTENCES)


@dataclass(frozen=True)
class Sample:
    language: str
    text: str

    def pcm48k(self) -> np.ndarray:
        """48 kHz int16, trimmed to the speech: what a caller's microphone sends."""
        return synthesize(self.text, self.language, voice="espeak")

    def samples(self) -> np.ndarray:
        """16 kHz mono float32, what the local engines take."""
        return resample(self.pcm48k(), SAMPLE_RATE, ENGINE_RATE).astype(np.float32) / 32768


def samples(language: str) -> list[Sample]:
    return [Sample(language, text) for text in SENTENCES[language]]
