"""The request styles of ``fastsample.requests``: one module per peer.

Each module's ``build(reader, seed, token_texts, eos_token_id)`` reads a request
through ``_common.Reader`` and returns ``(stages, request fields)``.
"""

from . import hf, llama_cpp, openai, vllm, webui

BUILDERS = {
    "llama.cpp": llama_cpp.build,
    "openai": openai.build,
    "hf": hf.build,
    "webui": webui.build,
    "vllm": vllm.build,
}
