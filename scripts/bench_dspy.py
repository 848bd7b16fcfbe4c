"""DSPy side of scripts/bench-vs-dspy.sh: one whole `Evaluate` run.

The same task as programs/sentiment.yaml (sentence -> sentiment, one of
positive/negative, exact-match metric) written the DSPy way and pointed at
the local stub LM (examples/stub.rs, 127.0.0.1). No cache: the LM is built
with cache=False, so every example is one HTTP request, as with
`lmc eval --no-cache`. The script is timed from outside as a whole process
(interpreter start-up and imports included, as lmc's start-up is); it prints
the score and the number of examples to stderr so the caller can check
both sides agree.

    python bench_dspy.py BASE_URL DATASET.csv THREADS
"""

import csv
import sys
from typing import Literal

import dspy


class Classify(dspy.Signature):
    """Classify the sentiment of a movie review sentence."""

    sentence: str = dspy.InputField(desc="a sentence from a movie review")
    sentiment: Literal["positive", "negative"] = dspy.OutputField(
        desc="the sentiment the sentence expresses"
    )


def exact_match(example, prediction, trace=None):
    return example.sentiment == prediction.sentiment


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, newline="") as f:
        devset = [
            dspy.Example(sentence=row["sentence"], sentiment=row["label"]).with_inputs("sentence")
            for row in csv.DictReader(f)
        ]
    lm = dspy.LM("openai/stub", api_base=base_url, api_key="x", cache=False)
    dspy.configure(lm=lm)
    evaluate = dspy.Evaluate(
        devset=devset,
        metric=exact_match,
        num_threads=threads,
        display_progress=False,
        display_table=False,
        max_errors=len(devset),
    )
    result = evaluate(dspy.Predict(Classify))
    score = getattr(result, "score", result)
    print(f"dspy {dspy.__version__}: score {score} on {len(devset)} examples", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
