"""llama.cpp itself, through its Python binding (llama-cpp-python), as the judge of a GGUF file.

transformers reading our GGUF back proves little about the real client: llama.cpp has its own
loader, tokenizer and graph. This module asks llama.cpp to load a file and answer chats with the
file's own chat template, tokenize text, and give next-token logits. It runs llama.cpp in a child
process, so a file that crashes llama.cpp (a segmentation fault) is reported as such instead of
taking the caller down with it.

llama-cpp-python has no wheel on PyPI: `bash scripts/llama-cpp.sh` builds it once from its source
archive (about 2 minutes on 2 cores), caches the wheel and installs it (the tests use it).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import UserError

INSTALL_HINT = "bash scripts/llama-cpp.sh (or pip install llama-cpp-python, which compiles llama.cpp)"
_RESULT = "orpo-dist-llama-cpp-result: "  # the child's last stdout line; llama.cpp may print too


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def ask(gguf_file: str | Path, *, chats=(), tokenize=(), logits=(), max_tokens: int = 48,
        verbose: bool = False, n_ctx: int = 512, timeout: float = 600) -> dict:
    """Load `gguf_file` in llama.cpp and return {"answers": [...], "finish": [...], "tokens":
    [[ids]...], "logits": [[[floats] per position]...], "stderr": str}.

    chats: message lists answered greedily by create_chat_completion (the file's chat template);
    tokenize: texts turned into ids (no BOS added, special tokens parsed);
    logits: texts whose every position's logits are returned (same tokenization)."""
    if not available():
        raise UserError(f"llama.cpp's Python binding is not installed here: {INSTALL_HINT}")
    request = {"model": str(gguf_file), "chats": list(chats), "tokenize": list(tokenize), "logits": list(logits),
               "max_tokens": max_tokens, "verbose": verbose, "n_ctx": n_ctx}
    proc = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(request), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise UserError(f"llama.cpp was killed by {name} while loading or running {gguf_file}: the file is not "
                            f"one llama.cpp can use. Its last words: {_tail(proc.stderr)}")
        raise UserError(f"llama.cpp could not use {gguf_file}: {_tail(proc.stderr)}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT)]
    result = json.loads(lines[-1][len(_RESULT):])
    result["stderr"] = proc.stderr
    return result


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-600:] or "(nothing)"


def _serve(request: dict) -> dict:
    """The child's side: everything llama.cpp is asked, one model load."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=request["model"], n_ctx=request["n_ctx"], verbose=request["verbose"],
                logits_all=bool(request["logits"]))
    out = {"answers": [], "finish": [], "tokens": [], "logits": []}
    try:
        for messages in request["chats"]:
            reply = llm.create_chat_completion(messages=messages, max_tokens=request["max_tokens"], temperature=0)
            choice = reply["choices"][0]
            out["answers"].append(choice["message"]["content"])
            out["finish"].append(choice["finish_reason"])
        for text in request["tokenize"]:
            out["tokens"].append(llm.tokenize(text.encode(), add_bos=False, special=True))
        for text in request["logits"]:
            ids = llm.tokenize(text.encode(), add_bos=False, special=True)
            llm.reset()
            llm.eval(ids)
            out["logits"].append(np.asarray(llm.scores[: len(ids)], dtype=np.float32).tolist())
    finally:
        llm.close()  # freed now, not by __del__ at interpreter exit (which prints a TypeError)
    return out


if __name__ == "__main__":
    reply = _serve(json.loads(sys.stdin.read()))
    print(_RESULT + json.dumps(reply), flush=True)
