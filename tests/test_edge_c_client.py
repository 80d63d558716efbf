"""The microcontroller-class C client (tools/edgelab/c_client/edge_client.c): built with the
system compiler, it streams a JPEG to a running web gateway with a token through one 4 KiB
buffer and writes the result file, which matches a direct OpenCV call."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import cv2
import pytest
from web_helpers import User, jpeg

SOURCE = Path(__file__).resolve().parents[1] / "tools" / "edgelab" / "c_client" / "edge_client.c"
CC = shutil.which("cc") or shutil.which("gcc")
RUN_TIMEOUT_S = 60

pytestmark = [pytest.mark.skipif(CC is None, reason="no C compiler (cc or gcc) to build the edge client"),
              pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def edge_client(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("cclient") / "edge_client"
    subprocess.run([CC, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(SOURCE)], check=True,
                   timeout=RUN_TIMEOUT_S)
    return exe


@pytest.fixture(scope="module")
def token(web):
    user = User(web, "camera")
    yield user.token
    user.close()


def run_client(exe: Path, web, token: str, pipeline: str, src: Path, out: Path):
    return subprocess.run([str(exe), "127.0.0.1", str(web.port), token, pipeline, str(src), str(out)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def test_c_client_round_trips_an_image_through_the_gateway(edge_client, web, token, tmp_path):
    src = tmp_path / "in.jpg"
    src.write_bytes(jpeg("astronaut.jpg"))
    out = tmp_path / "out.png"
    done = run_client(edge_client, web, token, "grayscale|png", src, out)
    assert done.returncode == 0, done.stderr
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    want = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2GRAY)
    assert got is not None and got.shape == want.shape
    assert cv2.PSNR(got, want) > 40


def test_c_client_reports_a_refused_token_with_the_servers_error(edge_client, web, tmp_path):
    src = tmp_path / "in.jpg"
    src.write_bytes(jpeg("coffee.jpg"))
    done = run_client(edge_client, web, "not-a-token", "grayscale", src, tmp_path / "out.jpg")
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr
    assert not (tmp_path / "out.jpg").exists()


def test_c_client_reads_an_answer_sent_before_its_upload_ended(edge_client, tmp_path):
    """A server may refuse from the request head alone and close while the image is still being
    sent (the gateway did, under load, for a bad token): the client reports that answer, not the
    broken pipe. A peer here answers 401 after the head and closes with 8 MiB still coming."""
    answer = b'{"error":{"code":"unauthorized","message":"refused before the body"}}'
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(RUN_TIMEOUT_S)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(answer), answer))

    server = threading.Thread(target=serve)
    server.start()
    src = tmp_path / "big.jpg"
    src.write_bytes(bytes(8 << 20))  # far more than the socket buffers hold: the close cuts the upload
    try:
        done = subprocess.run([str(edge_client), "127.0.0.1", str(srv.getsockname()[1]), "t", "grayscale",
                               str(src), str(tmp_path / "out.jpg")], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    finally:
        server.join(RUN_TIMEOUT_S)
        srv.close()
    assert done.returncode == 1, done.stderr  # was 3: "sending the image: Broken pipe"
    assert "HTTP 401" in done.stderr and "refused before the body" in done.stderr
    assert not (tmp_path / "out.jpg").exists()


def test_c_client_uses_one_fixed_buffer_of_a_few_kib():
    text = SOURCE.read_text()
    assert "#define BUF_BYTES 4096" in text
    assert not any(call in text for call in ("malloc(", "calloc(", "realloc("))
