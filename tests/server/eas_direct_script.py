"""Drive replicas with the published ``eas-prediction`` PredictClient in DIRECT mode, unchanged.

Run by an interpreter that has the SDK: ``python eas_direct_script.py ENDPOINT SERVICE
SECONDS THREADS [TOKEN]``. Each thread sends ``StringRequest``s for SECONDS seconds; prints a
JSON line ``{"ok": n, "errors": [...], "echoed": bool}``. SECONDS 0 sends one request.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def main() -> None:
    from eas_prediction import ENDPOINT_TYPE_DIRECT, PredictClient, StringRequest

    endpoint, service, seconds, threads = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:5])
    client = PredictClient(endpoint, service)
    if len(sys.argv) > 5:
        client.set_token(sys.argv[5])
    client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    client.set_timeout(5000)
    client.init()
    lock = threading.Lock()
    result: dict[str, object] = {"ok": 0, "errors": [], "echoed": True}
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        i = 0
        while True:
            body = f"req {n}-{i}"
            try:
                answer = client.predict(StringRequest(body)).response_data
                with lock:
                    result["ok"] = int(result["ok"]) + 1  # type: ignore[call-overload]
                    result["echoed"] = result["echoed"] and answer == body.encode()
            except Exception as exc:  # report what the SDK raised to the test
                with lock:
                    result["errors"].append(f"{type(exc).__name__}: {exc}")  # type: ignore[union-attr]
            i += 1
            if time.monotonic() >= stop:
                return

    workers = [threading.Thread(target=run, args=(n,)) for n in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.destroy()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
