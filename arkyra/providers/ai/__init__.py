"""AI model providers (GLM, OpenAI, Claude, Mistral) and their shared contract."""

from arkyra.providers.ai._base import (
    BaseAIProvider,
    ChatMessage,
    Completion,
    CompletionRequest,
    ModelInfo,
    StreamChunk,
    Usage,
)

__all__ = [
    "BaseAIProvider",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "ModelInfo",
    "StreamChunk",
    "Usage",
]
