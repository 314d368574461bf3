"""The model layer every stage loads through: Gemma 3 text models, base, adapter, full fine-tune or bundle.

    from scripts.model.loading import load_resolved, resolve_weights
    model, tokenizer = load_resolved(resolve_weights("latest", Path("models/runs")))

``loading`` (find and load weights, one dtype and attention rule), ``config`` (the ``model:`` section
stage configs share), ``gemma3`` (rope scaling, stop tokens, attention choice), ``attention``
(``windowed_sdpa``), ``identity`` (an import's record and label), ``hub`` (token, reachability).
Beside the layer, never imported by it: ``gguf_import`` (the packaged GGUF -> an HF folder) and
``tiny`` (tiny random Gemma 3 models for the demo, benches and tests).
"""
