"""An OpenAI-compatible chat-completions judge over plain HTTP (stdlib ``urllib``; no SDK).

Each judgement is one request: the rendered prompt as a single user message, ``max_tokens=1``,
``temperature=0``, ``logprobs=true``, ``top_logprobs=20`` (as in Betley et al.). The reply's top
log-probabilities of the first token become ``{token: probability}``. Requests that fail with HTTP 429,
5xx or a connection error are retried with exponential backoff (honouring ``Retry-After``); other
errors raise :class:`~emprobe.evaluation.judges.base.JudgeError` at once. Answers are cached on disk
(:class:`~emprobe.evaluation.judges.cache.JudgeCache`), so a rerun sends nothing.

The API key is read from an environment variable (default ``OPENAI_API_KEY``) when a request is made;
it is sent only in the ``Authorization`` header and never logged, stored or shown in ``repr``/``info``.
With the variable unset no ``Authorization`` header is sent (local servers need none).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from emprobe.errors import ConfigError
from emprobe.evaluation.aggregate import MIN_MASS
from emprobe.evaluation.judges.base import Judge, JudgeError
from emprobe.evaluation.judges.cache import JudgeCache

log = logging.getLogger(__name__)
DEFAULT_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def chat_completions_url(url: str) -> str:
    """``.../v1`` or ``.../v1/chat/completions`` -> the chat-completions endpoint."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"judge URL {redact_url(url)!r} must be an http(s) URL such as {DEFAULT_URL}")
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part."""
    p = urllib.parse.urlsplit(url)
    if p.username or p.password:
        p = p._replace(netloc=p.hostname + (f":{p.port}" if p.port else ""))
    return urllib.parse.urlunsplit(p)


class OpenAIJudge(Judge):
    """Judge through an OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp, ...).

    ``cache``: a :class:`JudgeCache`, a path to one, ``None`` for the default
    ``$EMPROBE_HOME/judge_cache.sqlite``, or ``False`` for none. ``workers`` requests run concurrently.
    """

    def __init__(self, model: str, url: str = DEFAULT_URL, api_key_env: str = "OPENAI_API_KEY",
                 cache: JudgeCache | str | Path | None | bool = None, top_logprobs: int = 20,
                 max_retries: int = 6, backoff: float = 1.0, max_backoff: float = 60.0, timeout: float = 60.0,
                 workers: int = 8, min_mass: float = MIN_MASS, seed: int | None = 0) -> None:
        if not model:
            raise ConfigError("the HTTP judge needs a judge model name")
        if not 1 <= top_logprobs <= 20:
            raise ConfigError(f"top_logprobs must be 1..20, got {top_logprobs}")
        self.model = model
        self.endpoint = chat_completions_url(url)
        self.api_key_env = api_key_env
        self.top_logprobs = top_logprobs
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.timeout, self.workers, self.min_mass, self.seed = timeout, max(1, workers), min_mass, seed
        self.cache: JudgeCache | None = (cache if isinstance(cache, JudgeCache) else
                                         None if cache is False else JudgeCache(cache or None))
        self.name = f"openai:{model}"
        self.requests = 0  # HTTP attempts made (retries included)
        self.retries = 0
        self._lock = threading.Lock()
        host = urllib.parse.urlsplit(self.endpoint).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"OpenAIJudge(model={self.model!r}, url={redact_url(self.endpoint)!r}, key_env={self.api_key_env!r})"

    def info(self) -> dict[str, Any]:
        return {**super().info(), "backend": "openai-http", "model": self.model,
                "url": redact_url(self.endpoint), "api_key_env": self.api_key_env,
                "top_logprobs": self.top_logprobs, "seed": self.seed,
                "cache": str(self.cache.path) if self.cache is not None else None}

    def _settings(self) -> dict[str, Any]:
        return {"top_logprobs": self.top_logprobs, "max_tokens": 1, "temperature": 0, "seed": self.seed}

    def request_body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                                "max_tokens": 1, "temperature": 0, "logprobs": True,
                                "top_logprobs": self.top_logprobs}
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    def top_probs(self, prompts: Sequence[str]) -> list[dict[str, float]]:
        keys = [JudgeCache.key(self.model, p, self._settings()) for p in prompts]
        out: list[dict[str, float] | None] = [self.cache.get(k) if self.cache is not None else None for k in keys]
        todo = [i for i, o in enumerate(out) if o is None]
        if todo:
            def one(i: int) -> None:
                probs = self._judge_one(prompts[i])
                if self.cache is not None:
                    self.cache.put(keys[i], self.model, probs)
                out[i] = probs

            if self.workers == 1 or len(todo) == 1:
                for i in todo:
                    one(i)
            else:
                with ThreadPoolExecutor(min(self.workers, len(todo))) as pool:
                    list(pool.map(one, todo))  # re-raises the first JudgeError
        return out  # type: ignore[return-value]

    def _judge_one(self, prompt: str) -> dict[str, float]:
        reply = self._post(self.request_body(prompt))
        return parse_top_logprobs(reply, self.endpoint)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        where = redact_url(self.endpoint)
        delay = self.backoff
        for attempt in range(self.max_retries + 1):
            wait = delay
            with self._lock:
                self.requests += 1
            try:
                req = urllib.request.Request(self.endpoint, data=data, headers=self._headers(), method="POST")
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)
                except json.JSONDecodeError:
                    raise JudgeError(f"judge {where} sent a reply that is not JSON") from None
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code not in RETRY_STATUS:
                    raise JudgeError(f"judge {where} answered HTTP {e.code}: {detail}") from None
                wait = max(wait, _retry_after(e))
                problem = f"HTTP {e.code}: {detail}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                problem = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt == self.max_retries:
                raise JudgeError(f"judge {where} failed after {attempt + 1} attempts ({problem})")
            wait = min(wait, self.max_backoff)
            log.warning("judge %s: %s; retrying in %.2fs", where, problem, wait)
            with self._lock:
                self.retries += 1
            time.sleep(wait * (1 + 0.1 * random.random()))
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")


def parse_top_logprobs(reply: dict[str, Any], where: str = "judge") -> dict[str, float]:
    """``{token: probability}`` from a chat-completions reply's first generated token."""
    try:
        content = reply["choices"][0]["logprobs"]["content"]
        top = content[0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"judge {redact_url(where)} replied without logprobs.content[0].top_logprobs "
                         "(does the server support logprobs/top_logprobs?)") from None
    if not top:  # some servers return only the chosen token
        top = [{"token": content[0]["token"], "logprob": content[0]["logprob"]}]
    out: dict[str, float] = {}
    for t in top:  # the same text from two token ids (rare) is summed
        out[str(t["token"])] = out.get(str(t["token"]), 0.0) + math.exp(float(t["logprob"]))
    return out


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read().decode("utf-8", "replace")
        msg = json.loads(body).get("error", body)
        msg = msg.get("message", msg) if isinstance(msg, dict) else msg
    except Exception:
        msg = e.reason
    return " ".join(str(msg).split())[:200] or str(e.reason)


def _retry_after(e: urllib.error.HTTPError) -> float:
    try:
        return float(e.headers.get("Retry-After", 0) or 0)
    except (TypeError, ValueError):
        return 0.0
