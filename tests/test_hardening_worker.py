"""The worker's own decode bound is a flag: an image whose header promises more decoded
bytes than --max-decoded-mb is refused before it is decoded."""
import cv2
import numpy as np
from faults_helpers import add_worker

from engine.errors import ImageTooLarge


def test_worker_refuses_images_over_its_decoded_bytes_limit(cluster_factory):
    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)
    add_worker(cluster, 1, "--max-decoded-mb", "1")
    cluster.wait_ready(1)
    big = cv2.imencode(".png", np.zeros((1000, 1000, 3), np.uint8))[1].tobytes()  # 3 MB decoded, tiny encoded
    small = cv2.imencode(".png", np.zeros((100, 100, 3), np.uint8))[1].tobytes()
    with cluster.client(timeout_s=30) as client:
        refused = client.submit(big, "grayscale").exception(30)
        assert client.process(small, "grayscale").width == 100
    assert isinstance(refused, ImageTooLarge) and "1.0 MB" in refused.message, refused
