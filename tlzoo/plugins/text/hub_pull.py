"""``tl pull`` for the catalogue's transformers encoders (bert-base-uncased, e5, bge, gte, ...).

The checkpoint goes into the Hugging Face cache, where the bert plugin reads it when the
hub is out of reach (offline runs read only that cache).  Only what loading needs comes
down: configuration, tokenizer and safetensors files; a pickled ``pytorch_model.bin``, ONNX
or TensorFlow copies never do.  Offline, or with a hub that does not answer, the pull is
refused at once, in one line, before huggingface_hub is imported.
"""

from __future__ import annotations

from pathlib import Path

from tlzoo.api.errors import TlzooError
from tlzoo.infra import network

# what from_pretrained reads: config, tokenizer (json, vocab.txt, merges.txt, sentencepiece), safetensors
WANTED = ("*.json", "*.txt", "*.model", "*.safetensors")
SKIPPED = ("onnx/*", "openvino/*", "*/onnx/*")


def refusal(name: str, why: str) -> TlzooError:
    """`tl pull NAME` of a text encoder cannot work: the hub is out of reach."""
    return TlzooError(
        f"`tl pull {name}` needs the network (the weights are on the hub), but {why}; run it on a machine "
        "that is online and copy its Hugging Face cache (HF_HOME) here, or pass --weights FOLDER "
        "(a saved transformers checkpoint)."
    )


def pull(name: str, hub_id: str) -> str:
    """Download ``hub_id``'s config, tokenizer and safetensors weights into the hub cache; return the folder."""
    why = network.unreachable(network.endpoint())
    if why:
        raise refusal(name, why)
    network.configure_hub()
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(hub_id, allow_patterns=list(WANTED), ignore_patterns=list(SKIPPED)))
    except Exception as exc:
        raise TlzooError(
            f"Could not download '{name}' from {hub_id} ({type(exc).__name__}: {str(exc)[:120]}); "
            "check the hub address (HF_ENDPOINT) and your proxy settings."
        ) from None
    if not any(folder.glob("*.safetensors")):
        raise TlzooError(
            f"'{hub_id}' has no safetensors weights on the hub, and tlzoo loads no pickled checkpoints; "
            "convert it in a session that trusts it with AutoModel.from_pretrained(ID).save_pretrained(FOLDER) "
            "and pass --weights FOLDER."
        )
    return str(folder)
