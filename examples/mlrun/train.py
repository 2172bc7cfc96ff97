"""Train an iris classifier from scikit-learn's bundled data and pickle it into a model folder.

    python examples/mlrun/train.py [--out examples/mlrun/model]

The folder holds ``model.pkl`` (found by ``get_model(suffix=".pkl")``) and ``classes.csv``
(returned in ``extra_data``).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

DEFAULT_DIR = Path(__file__).with_name("model")


def train(folder: Path = DEFAULT_DIR) -> Path:
    """Fit a logistic regression on the iris data set (no download); pickle it in ``folder``."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    classifier = LogisticRegression(max_iter=500).fit(data.data, data.target)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "model.pkl", "wb") as file:
        pickle.dump(classifier, file)
    (folder / "classes.csv").write_text(
        "label\n" + "\n".join(str(name) for name in data.target_names) + "\n", encoding="utf-8"
    )
    accuracy = classifier.score(data.data, data.target)
    print(f"saved {folder / 'model.pkl'} (training accuracy {accuracy:.3f})")
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    train(parser.parse_args().out)
