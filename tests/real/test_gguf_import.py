"""train.import-gguf: the gates, the saved folder, reruns, and bad sources."""

from __future__ import annotations

import json
import subprocess

import gguf
import numpy as np
import pytest
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer

from scripts.config import REPO_ROOT, UserError
from scripts.model.gguf_import import import_gguf
from scripts.model.gguf_tokenizer import REFERENCE_IDS, ROUNDTRIP_CORPUS, SPECIAL_IDS
from scripts.model.identity import TOKENIZER_VERSION, base_model_label
from scripts.model.loading import load_tokenizer


def test_import_writes_a_plain_hf_folder_with_gemma3s_tokenizer(real_import, real_gemma):
    assert not real_import.reused
    names = {p.name for p in real_gemma.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "import.json"} <= names
    config = json.loads((real_gemma / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        "gemma3_text", 18, 640, 262144)
    assert config["layer_types"].count("full_attention") == 3
    assert json.loads((real_gemma / "generation_config.json").read_text())["eos_token_id"] == [1, 106]

    tokenizer = AutoTokenizer.from_pretrained(real_gemma)
    assert tokenizer("The capital of France is").input_ids == REFERENCE_IDS == [2, 818, 5279, 529, 7001, 563]
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_IDS} == SPECIAL_IDS
    assert len(tokenizer) == 262144
    chat = tokenizer.apply_chat_template([{"role": "system", "content": "Sys"}, {"role": "user", "content": "Hi"}],
                                         add_generation_prompt=True, tokenize=False)
    assert chat == "<bos><start_of_turn>user\nSys\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    for text in ROUNDTRIP_CORPUS:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    # user-defined pieces stay atomic, as in SentencePiece
    assert tokenizer("<table><tr>", add_special_tokens=False).input_ids == [168, 173]

    with safe_open(str(real_gemma / "model.safetensors"), "pt") as weights:
        embed = weights.get_tensor("model.embed_tokens.weight")
        assert str(embed.dtype) == "torch.bfloat16" and tuple(embed.shape) == (262144, 640)
    assert 268_000_000 < real_import.parameters < 268_200_000


def test_import_json_records_source_and_every_gate(real_import, real_gemma):
    record = json.loads((real_gemma / "import.json").read_text())
    assert record["sha256"] == real_import.sha256 and len(record["sha256"]) == 64
    assert record["sha256"].startswith("a5fd3b62230a")
    assert record["quantization"] == "Q4_K_M" and record["dtype"] == "bf16"
    assert record["label"] == "google/gemma-3-270m (GGUF Q4_K_M, dequantised)" == base_model_label(str(real_gemma))
    checks = record["checks"]
    assert set(checks) == {"vocabulary", "special_ids", "bos_prepended", "reference_ids", "roundtrip",
                           "whitespace_pieces", "gemma_reference_agreement", "perplexity", "greedy_continuation",
                           "indented_html_loss"}
    assert all(check["passed"] for check in checks.values())
    assert record["tokenizer_version"] == TOKENIZER_VERSION == 2
    agreement = checks["gemma_reference_agreement"]
    assert agreement["share"] == 1.0 and agreement["texts"] > 150
    assert checks["whitespace_pieces"]["pieces"] == 30 + 31 + 31  # runs of 2-31 spaces, 1-31 newlines, 1-31 tabs
    # the base model reads indented HTML better with Gemma's own ids than with a plain SentencePiece's
    loss = checks["indented_html_loss"]["nats_per_char"]
    assert loss["imported"] == loss["reference"] < loss["sentencepiece_plain"] * 0.97
    assert 3 < checks["perplexity"]["value"] < 20  # ~9 when norms and embedding scale are right
    assert record["versions"]["gguf"] == "0.19.0"
    assert AutoConfig.from_pretrained(real_gemma).rope_parameters["full_attention"]["rope_theta"] == 1e6


def test_rerun_is_a_no_op_and_a_different_import_needs_force(real_import, real_gemma):
    again = import_gguf(None, real_gemma, dtype="bf16")
    assert again.reused and again.sha256 == real_import.sha256
    with pytest.raises(UserError, match="--force"):
        import_gguf(None, real_gemma, dtype="fp32")


def _write_gguf(path, arch: str, tokens: list[str]) -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([3] * 4 + [1] * (len(tokens) - 4))
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_another_architecture_is_refused_in_one_line(tmp_path):
    source = tmp_path / "llama.gguf"
    _write_gguf(source, "llama", ["<unk>", "<s>", "</s>", "<pad>", "a", "b"])
    with pytest.raises(UserError, match="'llama' GGUF; train.import-gguf imports Gemma 3"):
        import_gguf(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_gate_writes_nothing(tmp_path):
    # a gemma3 GGUF whose vocabulary is not Gemma 3's: the special-id and reference-id gates fail
    tokens = ["<unk>", "<bos>", "<eos>", "<pad>"] + [chr(c) for c in range(97, 123)] + ["▁"]
    source = tmp_path / "not-gemma.gguf"
    _write_gguf(source, "gemma3", tokens)
    with pytest.raises(UserError, match=r"import gate failed \(tokenizer\), nothing written: .*special_ids"):
        import_gguf(source, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["not-gemma.gguf"]


@pytest.mark.integration
def test_fab_task_reports_a_missing_file_in_one_line(tmp_path):
    proc = subprocess.run([str(REPO_ROOT / ".venv/bin/fab"), "train.import-gguf", "--gguf", str(tmp_path / "x.gguf"),
                           "--output", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: GGUF file {tmp_path / 'x.gguf'} does not exist"]
    assert not (tmp_path / "out").exists()


def test_an_import_with_an_older_tokenizer_is_refused_in_one_line(real_gemma, tmp_path):
    stale = tmp_path / "gemma-3-270m"
    stale.mkdir()
    for path in real_gemma.iterdir():
        (stale / path.name).symlink_to(path)
    record = json.loads((real_gemma / "import.json").read_text())
    del record["tokenizer_version"]  # imports made before the version was recorded
    (stale / "import.json").unlink()
    (stale / "import.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"imported with tokenizer version 1, which splits Gemma's whitespace "
                                        r"pieces; re-import it with `fab train.import-gguf --output "):
        load_tokenizer(str(stale))
    assert load_tokenizer(str(real_gemma))("  two").input_ids == [2, 138, 13498]
