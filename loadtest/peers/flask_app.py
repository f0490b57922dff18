"""The peer a user would otherwise deploy: Flask + NumPy in the style of the word2vec-api servers.

np.load(mmap_mode='r'), np.take for batches, tobytes for binary, json for JSON. Run under gunicorn (gthread).
Environment: MATRIX (the .npy path).
"""
import json
import os

import numpy as np
from flask import Flask, Response, request

E = np.load(os.environ["MATRIX"], mmap_mode="r")
app = Flask(__name__)


@app.get("/rows/<int:i>")
def row(i):
    if request.args.get("format") == "bin":
        return Response(E[i].tobytes(), mimetype="application/octet-stream")
    return Response(json.dumps({"id": i, "vector": E[i].tolist()}), mimetype="application/json")


@app.get("/slice")
def slice_():
    a, b = int(request.args["start"]), int(request.args["stop"])
    return Response(np.ascontiguousarray(E[a:b]).tobytes(), mimetype="application/octet-stream")


@app.post("/gather")
def gather():
    ids = np.frombuffer(request.get_data(), dtype=np.int64)
    return Response(np.take(E, ids, axis=0).tobytes(), mimetype="application/octet-stream")
