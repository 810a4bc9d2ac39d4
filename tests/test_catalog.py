"""The catalog against the installed livekit-agents: its LiveKit Inference STT models and their
option names must be ones the library's own type definitions know, so a typo or a model LiveKit
dropped shows up here, not as a refused call. Where the docs and the library differ, the
exception is listed with the reason. Also: adding a local engine is a catalog row and a plugin."""

from __future__ import annotations

import typing

import pytest
from livekit.agents import stt
from livekit.agents.inference import stt as inference_stt

from agent import catalog, config

pytestmark = pytest.mark.unit

# Documented by LiveKit's models reference but absent from the installed library's types.
NOT_IN_LIBRARY_TYPES = {
    "elevenlabs/scribe_v1": "on LiveKit's models page; livekit-agents 1.8.9 types no ElevenLabs STT",
}
# provider -> the library's TypedDict of its extra_kwargs
OPTION_TYPES = {
    "cartesia": inference_stt.CartesiaOptions,
    "deepgram": inference_stt.DeepgramOptions,
    "assemblyai": inference_stt.AssemblyaiOptions,
}


def literals(tp) -> set[str]:
    """Every string of a (nested) Literal/Union type alias."""
    args = typing.get_args(tp)
    if not args:
        return set()
    if typing.get_origin(tp) is typing.Literal:
        return {a for a in args if isinstance(a, str)}
    return set().union(*(literals(a) for a in args))


INFERENCE_STT = [m for m in catalog.STT_MODELS if m.route == "inference"]


@pytest.mark.parametrize("model", INFERENCE_STT, ids=lambda m: m.id)
def test_inference_stt_model_is_known_to_livekit(model):
    known = literals(inference_stt.STTModels)
    assert known, "could not read livekit-agents' STTModels"
    if model.id in NOT_IN_LIBRARY_TYPES:
        assert model.id not in known, f"{model.id} is typed now: drop its exception"
        return
    assert model.id in known, f"{model.id} is not one of livekit-agents' STT models"


@pytest.mark.parametrize("model", [m for m in INFERENCE_STT if m.options], ids=lambda m: m.id)
def test_option_names_are_the_librarys(model):
    typed = OPTION_TYPES[model.provider]
    if model.id.startswith("deepgram/flux"):
        typed = inference_stt.DeepgramFluxOptions
    unknown = set(model.options) - set(typing.get_type_hints(typed))
    assert not unknown, f"{model.id}: {unknown} are not in {typed.__name__}"


def test_inference_languages_match_the_library():
    assert set(catalog.INFERENCE_LANGUAGES) == literals(inference_stt.STTLanguages)


class EchoTextSTT(stt.STT):
    """A stand-in local engine: the smallest plugin the catalog can name."""

    def __init__(self, *, language: str = "en") -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self.language = language

    async def _recognize_impl(self, buffer, *, language, conn_options):  # pragma: no cover
        raise NotImplementedError


def test_a_new_local_engine_is_one_catalog_row(monkeypatch):
    row = catalog.Model(
        "stt",
        "local",
        "fake",
        "local",
        ("en", "de"),
        default_variant="en",
        plugin=catalog.Plugin(f"{__name__}:EchoTextSTT"),
        label="a test engine",
    )
    monkeypatch.setitem(catalog.MODELS, ("stt", row.id), row)
    plan = config.resolve(config.Settings().with_layer("cli", {"stt": "local/fake:de"}))
    built = config.build(plan.stt[0], plan)
    assert isinstance(built, EchoTextSTT) and built.language == "de"
    with pytest.raises(config.ConfigError, match="does not support language 'fr'"):
        config.parse("stt", "local/fake:fr")
