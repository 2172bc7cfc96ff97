# ruff: noqa
# fmt: off
# A code block of ../shared/seeds/virtex.md verbatim; only its import lines changed.
import numpy as np
from pil_shim import Image

from servekit import HttpMessage, HttpClient
from servekit.codecs import encode_pil, decode_numpy

img = Image.load_img("path/to/image_file")
msg = HttpMessage(data=[img])
msg.encode(encode_pil)

client = HttpClient()
resp = client.post(msg)
resp.decode(decode_numpy)

# The response data elements are here
prediction = resp.data
