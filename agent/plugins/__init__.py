"""The local engines as ordinary LiveKit plugins (stt.STT, tts.TTS, llm.LLM subclasses)."""


def require_english(model: str, language: str) -> None:
    """The bundled STT models are English-only (tiny-en, tiny.en)."""
    if language != "en":
        raise ValueError(f"{model} speaks only 'en', not {language!r}")
