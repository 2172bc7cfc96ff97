"""Train a small iris classifier from scikit-learn's bundled data and save it to a file.

    python examples/iris/train.py [--out examples/iris/iris.joblib]
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("iris.joblib")


def train(path: Path = DEFAULT_PATH) -> Path:
    """Fit a logistic regression on the iris data set (no download) and save it to ``path``."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    classifier = LogisticRegression(max_iter=500).fit(x_train, y_train)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"classifier": classifier, "classes": list(data.target_names)}, path)
    print(f"saved {path} (held-out accuracy {classifier.score(x_test, y_test):.3f})")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    train(parser.parse_args().out)
