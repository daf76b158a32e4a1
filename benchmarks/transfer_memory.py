"""Memory added by moving big files: an export of many large images, and one large upload.

    python benchmarks/transfer_memory.py [--images 200] [--mb 6] [--upload-mb 14]

Issue 26's targets: `qw.export()` of 200 images of 6 MB adds at most 64 MB whatever the data
(the zip is streamed to its file, one image at a time); `upload()` of a 14 MB PNG adds at most
1.2 times the file (the multipart body is streamed from the file). Memory is tracemalloc's
peak during the call, after a warm-up call (imports and first use are not the transfer's).
The export reads kept copies from disk, as an export of a keyed session does; the upload goes
to the simulator in a separate process, so the server's own buffers are not counted.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qwen_widgets as qw  # noqa: E402

KEY = "sk-benchmark-0123456789"


def peak_of(call) -> tuple[float, object]:
    tracemalloc.start()
    try:
        result = call()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def measure_export(folder: Path, images: int, megabytes: float) -> dict:
    kept = folder / "kept"
    kept.mkdir()
    tasks, left, number = [], images, 0
    while left:
        count = min(6, left)
        files = []
        for index in range(count):
            path = kept / f"{number}_{index}.png"
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(int(megabytes * 2**20)))
            files.append(qw.GeneratedImage(f"https://cdn.example/{number}/{index}.png", index, local_path=path))
        tasks.append(qw.Task(f"task_01BENCH{number}", qw.TaskStatus.COMPLETED, images=tuple(files),
                             request=qw.ImageRequest("a benchmark", n=count)))
        left, number = left - count, number + 1
    client = qw.QwenClient(KEY, base_url="http://127.0.0.1:9")
    qw.export(folder / "warm.zip", tasks[:1], client=client)
    started = time.monotonic()
    peak, path = peak_of(lambda: qw.export(folder / "all.zip", tasks, client=client))
    return {"images": images, "image_mb": megabytes, "zip_mb": path.stat().st_size / 2**20,
            "seconds": time.monotonic() - started, "peak_mb": peak / 2**20}


def export(folder: Path, images: int, megabytes: float) -> str:
    m = measure_export(folder, images, megabytes)
    verdict = "met" if m["peak_mb"] <= 64 else "MISSED"
    return (f"export of {images} images of {megabytes:g} MB ({m['zip_mb']:.0f} MB zip, "
            f"{m['seconds']:.1f} s): peak added {m['peak_mb']:.1f} MB (target <= 64 MB: {verdict})")


def measure_upload(folder: Path, megabytes: float) -> dict:
    file = folder / "photo.png"
    file.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(int(megabytes * 2**20)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "qwen_widgets.simulator", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client = qw.QwenClient(KEY, base_url=f"http://127.0.0.1:{port}")
        client.upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # first use
        peak, _ = peak_of(lambda: client.upload(file))
    finally:
        server.terminate()
        server.wait(10)
    return {"file_mb": file.stat().st_size / 2**20, "peak_mb": peak / 2**20}


def upload(folder: Path, megabytes: float) -> str:
    m = measure_upload(folder, megabytes)
    ratio = m["peak_mb"] / m["file_mb"]
    return (f"upload of a {m['file_mb']:.1f} MB PNG: peak added {m['peak_mb']:.1f} MB = {ratio:.2f}x the "
            f"file (target <= 1.2x: {'met' if ratio <= 1.2 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--mb", type=float, default=6.0)
    parser.add_argument("--upload-mb", type=float, default=14.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(export(Path(folder), options.images, options.mb))
    with tempfile.TemporaryDirectory() as folder:
        print(upload(Path(folder), options.upload_mb))


if __name__ == "__main__":
    main()
