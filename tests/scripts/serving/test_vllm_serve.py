"""package.export's vLLM check, and the model card's CPU serve command run for real on 127.0.0.1:
each task's request from structured_outputs.json over HTTP answers valid and as the offline engine did.

Tiny Gemma 3 (CPU): one engine start in the export, one server start."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import pytest
import yaml
from transformers import AutoTokenizer

from scripts.config import REPO_ROOT, load_config
from scripts.contracts import BundleManifest
from scripts.dataset.config import DatasetsConfig
from scripts.packaging.config import PackageConfig
from scripts.packaging.export import export_bundle
from scripts.serving.engines import vllm_version
from tests.scripts.evaluation import make_adapter, records, write_datasets_config, write_split

PAGES = records(2, 2)  # their system prompts become the registry's defaults, as a clean row without its own has


@contextlib.contextmanager
def captured_output(path):
    """Everything this process writes to file descriptors 1 and 2 (C++ included) goes to ``path``; warnings
    are recorded, every one of them, as a user's terminal would show them."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w+b") as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = open(sink.fileno(), "w", buffering=1, closefd=False)
        try:
            yield caught
        finally:
            sys.stdout.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_gemma):
    assert vllm_version(), "vLLM is not installed: ./scripts/setup_env.sh --serve"
    tmp = tmp_path_factory.mktemp("serve")
    run = tmp / "runs" / "20261206T000000Z"
    make_adapter(tiny_gemma, run / "adapter")
    AutoTokenizer.from_pretrained(tiny_gemma).save_pretrained(run / "adapter")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name_or_path": str(tiny_gemma)}}))
    datasets = write_datasets_config(tmp / "datasets.yaml", tmp / "processed")
    tasks = load_config(datasets, DatasetsConfig).tasks
    PAGES[:] = [p.model_copy(update={"system_prompt": tasks[p.task].system_prompt}) for p in PAGES]
    write_split(tmp / "processed", "validation", PAGES)
    eval_config = tmp / "eval.yaml"  # the shipped eval config with a budget the tiny model's answers hit
    raw = yaml.safe_load((REPO_ROOT / "configs/eval.yaml").read_text())
    raw["decoding"]["max_new_tokens"]["extraction"] = 90
    raw["schema_bounds"].update(max_string_tokens=4, max_list_items=2)
    eval_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = PackageConfig.model_validate({
        "adapter": "latest", "runs_dir": str(tmp / "runs"), "dtype": "bf16", "eval_config": str(eval_config),
        "data": {"datasets_config": str(datasets)}, "judge_dir": str(tmp / "judge"),
        "parity": {"prompts": 2, "max_new_tokens": 8}, "vllm": {"check_pages": len(PAGES), "cpu_kv_cache_gib": 1}})
    with captured_output(tmp / "export.log") as caught:
        result = export_bundle(cfg, tmp / "export")
    printed = (tmp / "export.log").read_text(errors="replace")
    warned = [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught]
    return result, BundleManifest.model_validate_json((result.path / "manifest.json").read_text()), (printed, warned)


def test_export_checks_the_bundle_on_vllm_as_the_card_serves_it(bundle):
    result, manifest, _ = bundle
    check = manifest.vllm_check
    assert check["checked"] and check["version"] == vllm_version() and check["max_model_len"] == 131072
    assert check["pages"] == len(PAGES) == check["valid"] and set(check["answers"]) == {p.id for p in PAGES}
    assert check["agree"] + len(check["disagreements"]) == len(PAGES)
    assert result.vllm_check.summary in (result.path / "README.md").read_text()
    assert set(manifest.serve_commands) == {"cuda", "rocm", "cpu"}
    assert "python -m vllm.entrypoints.openai.api_server" in manifest.serve_commands["cpu"]
    assert manifest.serve_commands["cpu"] in (result.path / "README.md").read_text()


def test_the_exports_vllm_check_prints_none_of_vllms_start_up_chatter(bundle):
    # what `fab package.export` and `fab demo` showed on every run before: a C++ NUMA notice, the
    # weight-loading bar and FutureWarnings of torch deprecations inside vLLM
    _, _, (printed, warned) = bundle
    for noise in ("NUMA binding", "Loading safetensors checkpoint shards"):
        assert noise not in printed, printed[-3000:]
    assert [w for w in warned if w.startswith("FutureWarning") and "/vllm/" in w] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_the_cards_cpu_command_serves_each_tasks_request_as_the_offline_engine_answers(bundle):
    result, manifest, _ = bundle
    port = _free_port()
    env_part, command = manifest.serve_commands["cpu"].split(" ", 1)
    assert env_part.startswith("VLLM_CPU_KVCACHE_SPACE=")
    args = shlex.split(command) + ["--host", "127.0.0.1", "--port", str(port)]
    assert args[0] == "python"
    args[0] = sys.executable  # this environment's python, as `python` on an activated venv
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "VLLM_CPU_KVCACHE_SPACE": env_part.split("=", 1)[1]}
    server = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.time() + 240
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert time.time() < deadline, "the server did not start in 240 s"
                time.sleep(2)
        requests = json.loads((result.path / "structured_outputs.json").read_text())
        served = {}
        for page in PAGES:
            request = requests[page.task]
            assert request["system_prompt"] == page.system_prompt
            reply = _post(port, {
                "model": str(result.path), "temperature": 0, "max_tokens": request["max_tokens"],
                "messages": [{"role": "system", "content": request["system_prompt"]},
                             {"role": "user", "content": page.prompt}],
                "structured_outputs": request["structured_outputs"], "vllm_xargs": request["vllm_xargs"]})
            choice = reply["choices"][0]
            assert choice["finish_reason"] == "stop", choice
            served[page.id] = choice["message"]["content"]
            if page.kind == "extraction":
                assert list(json.loads(served[page.id])) == list(request["structured_outputs"]["json"]["properties"])
            else:
                assert served[page.id] in ("YES", "NO")
        assert served == manifest.vllm_check["answers"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
