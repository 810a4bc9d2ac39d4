"""A development LLM that needs no model: it answers by repeating what it heard.

It lets the whole voice pipeline (STT -> LLM -> TTS) run offline, and its answer is
predictable, which is what the end-to-end tests check. It answers in the call's language: its
phrases in the languages below, otherwise the greeting in English and the heard words alone.
In a `multi` call it starts in English and follows the language of what it hears
(`update_options(language=...)`, from agent/switching.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, utils
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from ..catalog import MULTI, MULTI_START


@dataclass(frozen=True)
class Phrases:
    greeting: str
    you_said: str  # "{}" is what was heard
    not_caught: str


PHRASES = {
    "en": Phrases(
        "Hello! I am the local development agent. Say something and I will repeat it.",
        "You said: {}",
        "I did not catch that.",
    ),
    "de": Phrases(
        "Hallo! Ich bin der lokale Entwicklungsagent. Sag etwas, und ich wiederhole es.",
        "Du hast gesagt: {}",
        "Das habe ich nicht verstanden.",
    ),
    "es": Phrases(
        "¡Hola! Soy el agente local de desarrollo. Di algo y lo repetiré.",
        "Has dicho: {}",
        "No te he entendido.",
    ),
    "fr": Phrases(
        "Bonjour ! Je suis l'agent local de développement. Dites quelque chose et je le répéterai.",
        "Vous avez dit : {}",
        "Je n'ai pas compris.",
    ),
    "it": Phrases(
        "Ciao! Sono l'agente locale di sviluppo. Di' qualcosa e lo ripeterò.",
        "Hai detto: {}",
        "Non ho capito.",
    ),
    "pt": Phrases(
        "Olá! Sou o agente local de desenvolvimento. Diga algo e eu repito.",
        "Você disse: {}",
        "Não entendi.",
    ),
    "nl": Phrases(
        "Hallo! Ik ben de lokale ontwikkelagent. Zeg iets en ik herhaal het.",
        "Je zei: {}",
        "Dat heb ik niet verstaan.",
    ),
}
GREETING = PHRASES["en"].greeting
# a language without phrases: the greeting in English, then the heard words alone
UNTRANSLATED = Phrases(GREETING, "{}", PHRASES["en"].not_caught)


def phrases(language: str) -> Phrases:
    return PHRASES.get(language.split("-")[0], UNTRANSLATED)


def reply_to(heard: str, language: str = "en") -> str:
    heard = heard.strip()
    said = phrases(language)
    return said.you_said.format(heard) if heard else said.not_caught


class EchoLLM(llm.LLM):
    def __init__(self, *, language: str = "en") -> None:
        super().__init__()
        self.language = MULTI_START if language == MULTI else language

    def update_options(self, *, language: str) -> None:
        """Answer in `language` from the next reply on."""
        self.language = language

    @property
    def model(self) -> str:
        return "echo"

    @property
    def provider(self) -> str:
        return "local"

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict] = NOT_GIVEN,
    ) -> EchoStream:
        return EchoStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class EchoStream(llm.LLMStream):
    async def _run(self) -> None:
        language = self._llm.language
        users = [m for m in self.chat_ctx.messages() if m.role == "user"]
        # an instruction-driven turn (session.generate_reply) has no new user message
        text = (
            reply_to(users[-1].text_content or "", language)
            if users
            else phrases(language).greeting
        )
        self._event_ch.send_nowait(
            ChatChunk(id=utils.shortuuid(), delta=ChoiceDelta(role="assistant", content=text))
        )
