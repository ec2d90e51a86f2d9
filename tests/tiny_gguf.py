"""A tiny llama model as a GGUF file, written with the gguf package: for serving, not answers.

Two layers 64 wide, random weights, a 354-token SentencePiece vocabulary (unknown, begin and
end of text, the 256 byte fallbacks, and printable ASCII with '▁' for the space) and a chat
template in its metadata. Its tensor names come from the package's own constants, so the file
is what llama.cpp expects of a llama. About half a megabyte; loads in under a second.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 64, 2, 4, 128, 512
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += ["▁"] + [chr(c) for c in range(0x21, 0x7F)]
    types += [gguf.TokenType.NORMAL] * 95
    scores = [0.0] * 259 + [-float(i) for i in range(95)]
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: Path, seed: int = 1) -> Path:
    tokens, scores, types = vocabulary()
    arch = gguf.MODEL_ARCH.LLAMA
    name = gguf.MODEL_ARCH_NAMES[arch]
    w = gguf.GGUFWriter(str(path), name)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(seed)

    def tensor(kind: gguf.MODEL_TENSOR, shape: tuple[int, ...], block: int | None = None,
               ones: bool = False) -> None:
        tname = gguf.TENSOR_NAMES[kind].format(bid=block)
        data = np.ones(shape, np.float32) if ones else \
            (rng.standard_normal(shape) * 0.05).astype(np.float32)
        w.add_tensor(tname + ".weight", data)

    t = gguf.MODEL_TENSOR
    tensor(t.TOKEN_EMBD, (len(tokens), N_EMBD))
    tensor(t.OUTPUT_NORM, (N_EMBD,), ones=True)
    tensor(t.OUTPUT, (len(tokens), N_EMBD))
    for b in range(N_LAYER):
        tensor(t.ATTN_NORM, (N_EMBD,), b, ones=True)
        for kind in (t.ATTN_Q, t.ATTN_K, t.ATTN_V, t.ATTN_OUT):
            tensor(kind, (N_EMBD, N_EMBD), b)
        tensor(t.FFN_NORM, (N_EMBD,), b, ones=True)
        tensor(t.FFN_GATE, (N_FF, N_EMBD), b)
        tensor(t.FFN_UP, (N_FF, N_EMBD), b)
        tensor(t.FFN_DOWN, (N_EMBD, N_FF), b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
