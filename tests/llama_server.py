"""A real inference engine for the tests: llama.cpp's `llama-server` with a tiny random qwen2.

The server is built from the llama.cpp sources vendored in the `llama-cpp-python`
sdist on PyPI (only the `llama-server` target, CPU, static, no web UI, no TLS,
nothing downloaded at build or run time) and cached outside the repository,
keyed by version: a cold build takes several minutes on two cores, a cached
one nothing. The model is written by the `gguf` package: the qwen2
architecture, two layers of width 64, an untied output head, random weights,
and the real Qwen2 tokenizer from the vocabulary file shipped in the same
sdist. Its answers are noise, but its decoding is real: grammar-constrained
JSON from `response_format`, parallel slots, `n` choices and `usage` with
cached prompt tokens. Assert validity, statuses and counts — never scores.

Run directly to build the cache: `python -m tests.llama_server`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

VERSION = os.environ.get("MARKWISE_LLAMA_CPP_VERSION", "0.3.36")
VOCAB_MEMBER = "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary
    "-DGGML_NATIVE=OFF",  # the cached binary may move to another machine of the kind
    "-DGGML_OPENMP=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_UI=OFF",  # no npm build of the web UI
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # and no download of a prebuilt one
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
]


def cache_dir() -> Path:
    root = os.environ.get("MARKWISE_LLAMA_CACHE") or Path.home() / ".cache" / "markwise"
    return Path(root) / f"llama-server-{VERSION}"


def _log(message: str) -> None:
    print(f"[llama-server] {message}", file=sys.stderr, flush=True)


def _download_sdist(dest: Path) -> Path:
    """The sdist from the package index: its simple JSON API first, then pip as a fallback."""
    name = f"llama_cpp_python-{VERSION}.tar.gz"
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        request = urllib.request.Request(
            f"{index}/llama-cpp-python/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            url = next(f["url"] for f in json.load(response)["files"] if f["filename"] == name)
        with urllib.request.urlopen(url, timeout=600) as response, (dest / name).open("wb") as out:
            shutil.copyfileobj(response, out)
        return dest / name
    except (OSError, ValueError, StopIteration) as exc:
        _log(f"index download failed ({exc!r}); asking pip")
    # pip prepares the sdist's metadata first (about a minute), but honours pip.conf.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(dest),
            f"llama-cpp-python=={VERSION}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return dest / name


def ensure_binary() -> tuple[Path, Path]:
    """(llama-server, Qwen2 vocabulary gguf), built once per version and cached."""
    directory = cache_dir()
    binary, vocab = directory / "llama-server", directory / "ggml-vocab-qwen2.gguf"
    if binary.is_file() and vocab.is_file():
        return binary, vocab
    directory.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".llama-server-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs wait for one build
        if binary.is_file() and vocab.is_file():
            return binary, vocab
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp:
            work = Path(tmp)
            sdist = _download_sdist(work)
            with tarfile.open(sdist) as archive:
                top = archive.getmembers()[0].name.split("/")[0]
                members = [
                    m
                    for m in archive.getmembers()
                    if m.name.startswith((f"{top}/vendor/llama.cpp", f"{top}/.git"))
                ]
                archive.extractall(work / "src", members=members, filter="data")
            source = work / "src" / top / "vendor" / "llama.cpp"
            shutil.copyfile(work / "src" / top / VOCAB_MEMBER, vocab)
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            build = work / "build"
            _log(f"building llama-server {VERSION} (several minutes, once)")
            subprocess.run(
                ["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_FLAGS],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(
                [
                    "cmake",
                    "--build",
                    str(build),
                    "--target",
                    "llama-server",
                    "-j",
                    str(os.cpu_count() or 2),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            built = build / "bin" / "llama-server"
            if shutil.which("strip"):
                subprocess.run(["strip", str(built)], check=True)
            partial = binary.with_suffix(".partial")
            shutil.copyfile(built, partial)
            partial.chmod(0o755)
            partial.replace(binary)  # readers never see half a binary
        _log(f"built in {time.monotonic() - started:.0f}s: {binary}")
    return binary, vocab


# --- The tiny model --------------------------------------------------------------------


def _tokenizer_fields(vocab: Path) -> list[tuple[str, object, object, object]]:
    """Every tokenizer.* key/value of a GGUF file, read directly (GGUFReader takes a minute
    on 150k tokens; this takes well under a second)."""
    import gguf

    scalar = {
        gguf.GGUFValueType.UINT8: "B",
        gguf.GGUFValueType.INT8: "b",
        gguf.GGUFValueType.UINT16: "H",
        gguf.GGUFValueType.INT16: "h",
        gguf.GGUFValueType.UINT32: "I",
        gguf.GGUFValueType.INT32: "i",
        gguf.GGUFValueType.UINT64: "Q",
        gguf.GGUFValueType.INT64: "q",
        gguf.GGUFValueType.FLOAT32: "f",
        gguf.GGUFValueType.FLOAT64: "d",
        gguf.GGUFValueType.BOOL: "?",
    }
    data = memoryview(vocab.read_bytes())
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def take_bytes() -> bytes:
        nonlocal pos
        size = take("Q")
        pos += size
        return bytes(data[pos - size : pos])

    if bytes(data[:4]) != b"GGUF":
        raise ValueError(f"{vocab} is not a GGUF file")
    pos = 4
    take("I")  # version
    take("Q")  # tensor count
    fields = []
    for _ in range(take("Q")):
        key = take_bytes().decode()
        kind = gguf.GGUFValueType(take("I"))
        sub = None
        if kind == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType(take("I"))
            count = take("Q")
            if sub == gguf.GGUFValueType.STRING:
                value: object = [take_bytes() for _ in range(count)]
            else:
                fmt = scalar[sub]
                value = list(struct.unpack_from(f"<{count}{fmt}", data, pos))
                pos += count * struct.calcsize(fmt)
        elif kind == gguf.GGUFValueType.STRING:
            value = take_bytes()
        else:
            value = take(scalar[kind])
        if key.startswith("tokenizer."):
            fields.append((key, value, kind, sub))
    return fields


def write_tiny_qwen2(vocab: Path, out: Path, *, seed: int = 0) -> Path:
    """Two layers, width 64, 4 query / 2 KV heads, untied output head, N(0, 0.02) weights."""
    import gguf
    import numpy as np

    n_layer, n_embd, n_head, n_head_kv, n_ff = 2, 64, 4, 2, 128
    n_kv = n_embd // n_head * n_head_kv
    tokenizer = _tokenizer_fields(vocab)
    n_vocab = len(next(v for k, v, *_ in tokenizer if k == "tokenizer.ggml.tokens"))
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(out, "qwen2")
    writer.add_name("markwise-tiny-qwen2-random")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(32768)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    for key, value, kind, sub in tokenizer:  # the real Qwen2 tokenizer and chat template
        writer.add_key_value(key, value, kind, sub_type=sub)

    def matrix(name: str, rows: int, cols: int) -> None:
        writer.add_tensor(name, rng.normal(0, 0.02, (rows, cols)).astype(np.float16))

    def vector(name: str, size: int, fill: float) -> None:
        writer.add_tensor(name, np.full(size, fill, dtype=np.float32))

    matrix("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        vector(p + "attn_norm.weight", n_embd, 1.0)
        matrix(p + "attn_q.weight", n_embd, n_embd)
        matrix(p + "attn_k.weight", n_kv, n_embd)
        matrix(p + "attn_v.weight", n_kv, n_embd)
        vector(p + "attn_q.bias", n_embd, 0.0)
        vector(p + "attn_k.bias", n_kv, 0.0)
        vector(p + "attn_v.bias", n_kv, 0.0)
        matrix(p + "attn_output.weight", n_embd, n_embd)
        vector(p + "ffn_norm.weight", n_embd, 1.0)
        matrix(p + "ffn_gate.weight", n_ff, n_embd)
        matrix(p + "ffn_up.weight", n_ff, n_embd)
        matrix(p + "ffn_down.weight", n_embd, n_ff)
    vector("output_norm.weight", n_embd, 1.0)
    matrix("output.weight", n_vocab, n_embd)  # untied from token_embd
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


# --- Running it --------------------------------------------------------------------------


class LlamaServer:
    """`llama-server` on 127.0.0.1 serving the tiny model under the configured model id."""

    def __init__(
        self,
        binary: Path,
        model: Path,
        *,
        alias: str,
        slots: int = 4,
        context: int = 16384,
        log: Path,
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "-m",
                str(model),
                "--alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--offline",
                "--no-webui",
                "-np",
                str(slots),
                "-c",
                str(context),
                "-t",
                "2",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("llama-server did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


if __name__ == "__main__":
    print(ensure_binary()[0])
