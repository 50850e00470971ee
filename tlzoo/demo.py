"""``make demo``: the main job on the embedded default data, then a prediction.

Trains BERT (the packaged all-MiniLM-L6-v2) with feature extraction on 2,000
Rotten Tomatoes snippets (fresh / rotten / plot) that ship with the set-up, then
classifies three new sentences with the trained run.  The equivalent commands:

    tl run --plugin bert --data rotten-tomatoes --limit 2000
    tl predict runs/<run> "A dazzling, heartfelt film."
"""

from __future__ import annotations

import sys
import time

SENTENCES = [
    "A dazzling, heartfelt film with wonderful performances.",
    "Tedious and overlong; I nearly fell asleep halfway through.",
    "A young farmer travels to the capital to find his missing brother.",
]


def main() -> int:
    from tlzoo import Engine, RunConfig, TlzooError

    cfg = RunConfig()
    cfg.model.plugin = "bert"
    cfg.data.path = "rotten-tomatoes"
    cfg.data.limit = 2000
    cfg.out = f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}-bert"
    print("$ tl run --plugin bert --data rotten-tomatoes --limit 2000 --out", cfg.out, file=sys.stderr)
    engine = Engine()
    try:
        result = engine.run(cfg)
        print(f"\n$ tl predict {result.run_dir} ...", file=sys.stderr)
        for row in engine.predict(result.run_dir, SENTENCES):
            print(f"{row['label']:<7} {row['probability']:.3f}  {row['input']}")
    except TlzooError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    t = result.metrics["test"]
    print(f"\ntest accuracy {t['accuracy']:.3f}, macro-F1 {t['macro_f1']:.3f}; plots and model in {result.run_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
