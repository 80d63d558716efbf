"""Gateway for the older deep-learning client: one JSON frame in, top-3 predictions out.

That client is a ZeroMQ DEALER whose routing id is its request id; it sends
``{"payload": "<base64 image file>", "_rid": "<id>"}`` (no empty delimiter frame) and
waits on the same socket for ``{"preds": "label : score, label : score, label : score"}``.
The gateway (``python -m engine.dlgateway``) binds a ROUTER for such clients and is
itself a client of the engine's broker: each image runs the learned face detector and
person segmentation on a worker. ``wire`` is the format, ``server`` the loop.
"""
from .server import Gateway, GatewaySettings

__all__ = ["Gateway", "GatewaySettings"]
