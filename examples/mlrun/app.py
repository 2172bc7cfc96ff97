"""mlrun's V2ModelServer example, served by servekit with dynamic batching.

    python examples/mlrun/train.py
    servekit serve examples/mlrun/app.py:instance
    curl -s localhost:8000/v2/models/iris/versions/v1/infer \
        -d '{"id": "1", "inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'

The class is mlrun's docs example with the import line changed; ``max_batch_size=16`` lets
up to 16 concurrent requests share one ``predict`` call (their rows concatenated).
"""

import os
from pathlib import Path
from pickle import load

import numpy as np

from servekit.serving import V2ModelServer


# mlrun's example as written (hence the unused extra_data and the unclosed file)
class MyClass(V2ModelServer):
    def load(self):
        model_file, extra_data = self.get_model(suffix=".pkl")  # noqa: RUF059
        self.model = load(open(model_file, "rb"))  # noqa: SIM115

    def predict(self, request):
        return self.model.predict(np.array(request["inputs"])).tolist()


MODEL_PATH = os.environ.get("MLRUN_EXAMPLE_MODEL", str(Path(__file__).with_name("model")))

instance = MyClass(name="iris:v1", model_path=MODEL_PATH, max_batch_size=16)
