"""What a recipe needs from the Hugging Face Hub, checked in seconds before any heavy work.

Without this, a hub model or dataset name with no network fails after about 31 s of the Hub
client's retries, and `push_to_hub: true` offline or without a token fails with an httpx traceback
at the very end of training, when the model is already trained. Names that resolve locally (a
folder or file, a built-in model, a copy in the Hugging Face cache) need no network.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import UserError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # for models; datasets also honour:
DATASETS_OFFLINE_VARIABLE = "HF_DATASETS_OFFLINE"
CONNECT_TIMEOUT_S = 3.0
ANSWER_TIMEOUT_S = 5.0  # the hub answers a HEAD in well under a second; a proxy that swallows it never does


def offline_variable(for_datasets: bool = False) -> str | None:
    """The HF offline variable that is set (the user said there is no hub), or None."""
    names = OFFLINE_VARIABLES + ((DATASETS_OFFLINE_VARIABLE,) if for_datasets else ())
    return next((v for v in names if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")), None)


def offline(for_datasets: bool = False) -> bool:
    return offline_variable(for_datasets) is not None


def hub_unreachable(timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the hub cannot be used, or None if it answers an HTTP request (HF_ENDPOINT honoured):
    the connection must open within `timeout` and an answer come within ANSWER_TIMEOUT_S (an
    address that accepts connections and never answers held the Hub client for minutes)."""
    import urllib.error
    import urllib.request

    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        return f"{host}:{port}: {err.strerror or err}"
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/whoami-v2", method="HEAD"),
                               timeout=ANSWER_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None  # it answered (401 without a token): the hub is there
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
            return f"{host}:{port} accepted the connection but did not answer within {ANSWER_TIMEOUT_S:.0f} s"
        return f"{host}:{port}: {reason}"
    return None


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_on_disk(repo_id: str, kind: str) -> bool:
    """A copy of this repo in the local hub cache (kind: "model" or "dataset")."""
    return (_hub_cache() / f"{kind}s--{repo_id.replace('/', '--')}").is_dir()


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The folder of this model's files in the local hub cache (what from_pretrained would read), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id: from_pretrained names it in one line later
        return None
    return Path(found).parent if isinstance(found, str) else None


def check_hub_answers(name: str, what: str, log=None) -> None:
    """A hub name not in the local cache is fetched: refuse in seconds when the hub does not answer
    (the Hub client would wait and retry for minutes, saying nothing). One in the cache is read
    from it alone when the hub does not answer (else each file's freshness check waits first)."""
    repo = hub_model_name(name)
    if repo is None or offline():
        return
    why = hub_unreachable()
    if why and cached_on_disk(repo, "model"):
        use_cache_only(why, log or (lambda message: print(f"orpo-dist: {message}", file=sys.stderr, flush=True)))
    elif why:
        raise UserError(f"{what} {repo!r} is not a local folder nor in the local Hugging Face cache, and the hub "
                        f"cannot be reached ({why}). Download it once where there is network (`hf download "
                        f"{repo}`), or give a local folder")


def use_cache_only(why: str, log) -> None:
    """Switch this process (and the processes it starts) to the local cache: the Hub client reads
    HF_HUB_OFFLINE once at import, so its module constants are set too."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    log(f"the Hugging Face hub cannot be reached ({why}): using the local cache only (HF_HUB_OFFLINE=1)")


@dataclass
class HubNeeds:
    """Hub repos a run would download, and whether it pushes its model at the end."""
    downloads: list[tuple[str, str]]  # (what, repo id), e.g. ("model", "meta-llama/Meta-Llama-3-8B")
    cached: list[tuple[str, str]]
    push: bool


def token() -> str | None:
    from huggingface_hub import get_token

    return get_token()  # HF_TOKEN, or the file `hf auth login` writes


def looks_local(name: str) -> bool:
    """A name that can only be a local path (a hub id is NAME or OWNER/NAME)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith((".gguf", ".json", ".yaml"))


def hub_model_name(name: str | None) -> str | None:
    from . import builtin_models

    if not name or builtin_models.is_alias(name):
        return None
    if Path(os.path.expanduser(name)).exists() or looks_local(name):
        return None  # local (a missing local path is refused as such by model.check_model_folder)
    return name


def check_hub_access(needs: HubNeeds, log) -> None:
    """Refuse, in one line and in seconds, what cannot work without the hub; fall back to the
    cache when every download is cached but the hub does not answer."""
    if not needs.downloads and not needs.cached and not needs.push:
        return
    if needs.push and not token():
        raise UserError("push_to_hub is on but no Hugging Face token is set: run `hf auth login` or set HF_TOKEN "
                        "(a token with write access), or set push_to_hub: false and upload the output folder later")
    for_datasets = any(what == "dataset" for what, _ in needs.downloads + needs.cached)
    said_offline = offline_variable(for_datasets)
    why = f"{said_offline} is set" if said_offline else hub_unreachable()
    if why is None:
        return
    if needs.push:
        raise UserError(f"push_to_hub is on but the Hugging Face hub cannot be reached ({why}): the model could "
                        "not be uploaded after training. Set push_to_hub: false (upload the output folder later "
                        "with `hf upload`), or run where the hub is reachable")
    if needs.downloads:
        names = ", ".join(f"{what} {repo!r}" for what, repo in needs.downloads)
        raise UserError(f"{names}: not a local file or folder, not in the local Hugging Face cache, and the hub "
                        f"cannot be reached ({why}). Download it once where there is network "
                        "(`hf download REPO`, add --repo-type dataset for data), or give a local path")
    if not said_offline:
        use_cache_only(why, log)
