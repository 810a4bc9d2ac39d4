"""A development LLM that needs no model: it answers by repeating what it heard.

It lets the whole voice pipeline (STT -> LLM -> TTS) run offline, and its answer is
predictable, which is what the end-to-end tests check.
"""

from __future__ import annotations

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, utils
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta
from livekit.agents.types import NOT_GIVEN, NotGivenOr

GREETING = "Hello! I am the local development agent. Say something and I will repeat it."


def reply_to(heard: str) -> str:
    heard = heard.strip()
    return f"You said: {heard}" if heard else "I did not catch that."


class EchoLLM(llm.LLM):
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
        users = [m for m in self.chat_ctx.messages() if m.role == "user"]
        # an instruction-driven turn (session.generate_reply) has no new user message
        text = reply_to(users[-1].text_content or "") if users else GREETING
        self._event_ch.send_nowait(
            ChatChunk(id=utils.shortuuid(), delta=ChoiceDelta(role="assistant", content=text))
        )
