"""``tl embed``: a backbone's features for every record of a data source, to .npy or .parquet."""

from __future__ import annotations

import click

from tlzoo.cli.app import cli
from tlzoo.cli.errors import friendly, offline_option


@cli.command()
@click.option("--plugin", "-p", required=True, help="Backbone plugin (bert, efficientnet, ...) or a catalogued model.")
@click.option("--model", "-m", default="", help="Model of the plugin; default: the plugin's default.")
@click.option("--weights", help="Local weights: a checkpoint folder or a weights file.")
@click.option(
    "--data",
    "-d",
    required=True,
    help="What `tl run --data` reads (CSV/JSONL, a folder, a dataset name); labels are not needed.",
)
@click.option("--text-column", default="text", show_default=True, help="Column holding the text (or image path).")
@click.option("--encoding", default="utf-8", show_default=True, help="Text file encoding.")
@click.option("--limit", type=int, default=0, help="Only the first N records [all].")
@click.option("--out", "-o", required=True, help="Output file: .npy (the vectors) or .parquet (ids and vectors).")
@click.option("--normalize", is_flag=True, help="Divide each vector by its L2 norm (cosine = dot product).")
@click.option("--pooling", default="", help="Text: mean, cls, max or pooler [the backbone's default].")
@click.option("--max-length", type=int, default=128, show_default=True, help="Text: tokens per example.")
@click.option("--image-size", type=int, default=0, help="Vision: input size [from the weights].")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), help="Extraction runtime [torch].")
@click.option("--batch-size", "-b", type=int, default=32, show_default=True, help="Examples per batch.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda.")
@offline_option
@friendly
def embed(
    plugin: str,
    model: str,
    weights: str | None,
    data: str,
    text_column: str,
    encoding: str,
    limit: int,
    out: str,
    normalize: bool,
    pooling: str,
    max_length: int,
    image_size: int,
    runtime: str | None,
    batch_size: int,
    device: str,
) -> None:
    """Embed every record of a data source with a backbone, as `tl run` extracts its features.

    \b
      tl embed --plugin bert --model all-MiniLM-L6-v2 --data reviews.csv --normalize --out emb.npy
      tl embed --plugin efficientnet_lite0 --data ./photos/ --out emb.parquet
    """
    from tlzoo.commands.embed import check_out, embed_data, write_embeddings

    check_out(out)  # before anything is extracted
    result = embed_data(
        plugin,
        data,
        text_column=text_column,
        encoding=encoding,
        limit=limit,
        model=model,
        weights=weights,
        normalize=normalize,
        pooling=pooling,
        max_length=max_length,
        image_size=image_size,
        runtime=runtime,
        batch_size=batch_size,
        device=device,
        log=lambda msg: click.echo(msg, err=True),
        progress=True,
    )
    path = write_embeddings(result, out)
    n, d = result.vectors.shape
    click.echo(f"wrote {n} embeddings of {d} dimensions ({result.model}) to {path}")
