"""How answers are generated: the HF ``generate`` path (``scripts.evaluation.generation.generate``) or vLLM.

    from scripts.serving.engines import EngineSettings, resolve_engine
    resolve_engine("auto")                       # "vllm" when vLLM is installed, else "hf"

``engines`` holds the engine choice and its settings (one config section for eval.generate and
ops.backfill), ``vllm_engine`` the offline vLLM engine, ``vllm_closing`` the answer closing as a
vLLM logits processor (also what ``vllm serve --logits-processors`` loads).
"""
