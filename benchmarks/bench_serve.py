"""Load benchmark of `ferkit serve` on loopback: concurrent clients posting real photos, against the same photos
through `Recognizer.predict_batch` in one process.

    python benchmarks/bench_serve.py --photos ../shared/media/photos \
        --detector-model ../shared/models/face_detection_yunet_2023mar.onnx

Starts `ferkit serve` on a free 127.0.0.1 port, waits for /health (the start time), then runs --clients threads,
each with its own keep-alive connection, posting the photos round-robin until --seconds have passed (after
--warmup seconds that are not counted). Every loop is bounded by the clock and stops by itself; nothing but
127.0.0.1 is contacted. Records throughput, p50/p99 latency, errors by status, and the server's resident memory
(peak, and at the end of the warm-up against the end of the run: flat memory means no growth per request).
Then stops the server and measures predict_batch on the same photos (all of them per call) for --batch-seconds.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}

_WITH_SERVE = """
import sys
from ferkit import cli
if "serve" not in cli._VERB_MODULES:
    cli._VERB_MODULES += ("serve",)
sys.exit(cli.main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (uvicorn workers), MB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def start_server(args, port: int) -> tuple[subprocess.Popen, float]:
    cmd = [sys.executable, "-c", _WITH_SERVE, "serve", "--port", str(port), "--no-access-log",
           "--detector", args.detector, "--threads", str(args.threads), "--workers", str(args.workers)]
    if args.detector_model:
        cmd += ["--detector-model", args.detector_model]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while time.perf_counter() - started < 30:
        if proc.poll() is not None:
            raise SystemExit(f"ferkit serve exited: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                return proc, time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("ferkit serve did not answer /health within 30 s")


def client(port: int, photos: list[bytes], offset: int, warm_until: float, stop_at: float, out: dict) -> None:
    """Post photos until ``stop_at``; latencies and statuses after ``warm_until`` go into ``out``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = offset
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        body = photos[i % len(photos)]
        i += 1
        t = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/predict", body=body, headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            payload = r.read()
            status = r.status
            if status == 200:
                json.loads(payload)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            status = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        done = time.perf_counter()
        if t >= warm_until and done <= stop_at:
            out["latency"].append(done - t)
            out["status"][status] = out["status"].get(status, 0) + 1
    conn.close()


def load(args, photos: list[bytes]) -> dict:
    port = free_port()
    proc, startup_s = start_server(args, port)
    rss: list[tuple[float, float]] = []
    try:
        t0 = time.perf_counter()
        warm_until, stop_at = t0 + args.warmup, t0 + args.warmup + args.seconds
        results = [{"latency": [], "status": {}} for _ in range(args.clients)]
        threads = [threading.Thread(target=client, args=(port, photos, k, warm_until, stop_at, results[k]))
                   for k in range(args.clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss.append((time.perf_counter() - t0, rss_mb(proc.pid)))
            time.sleep(0.5)
        for t in threads:
            t.join()
    finally:
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    latency = sorted(x for r in results for x in r["latency"])
    statuses: dict = {}
    for r in results:
        for k, v in r["status"].items():
            statuses[str(k)] = statuses.get(str(k), 0) + v
    ok = statuses.get("200", 0)
    after_warmup = [m for t, m in rss if t >= args.warmup]
    return {
        "startup_s": round(startup_s, 2),
        "requests": len(latency), "ok": ok, "errors": len(latency) - ok, "statuses": statuses,
        "throughput_img_s": round(ok / args.seconds, 1),
        "p50_ms": round(1000 * statistics.median(latency), 1),
        "p99_ms": round(1000 * latency[int(0.99 * (len(latency) - 1))], 1),
        "rss_peak_mb": round(max(m for _, m in rss), 1),
        "rss_after_warmup_mb": round(after_warmup[0], 1), "rss_end_mb": round(after_warmup[-1], 1),
        # The peak RSS of each quarter of the measured window: a plateau is an allocator warming up, a steady
        # climb a leak.
        "rss_quarter_peaks_mb": [round(max(m for t, m in rss if args.warmup + q * args.seconds / 4 <= t
                                           < args.warmup + (q + 1) * args.seconds / 4), 1) for q in range(4)],
    }


def in_process(args, photos: list[bytes]) -> dict:
    from ferkit.inference.recognizer import Recognizer

    rec = Recognizer(detector=args.detector, detector_model=args.detector_model)
    rec.predict_batch(photos)  # warm-up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < args.batch_seconds:
        rec.predict_batch(photos)
        n += len(photos)
    elapsed = time.perf_counter() - started
    return {"throughput_img_s": round(n / elapsed, 1), "images": n, "batch": len(photos)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=Path("../shared/media/photos"))
    p.add_argument("--detector", default="auto")
    p.add_argument("--detector-model")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--batch-seconds", type=float, default=12)
    p.add_argument("--threads", type=int, default=2, help="the server's inference threads")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    if args.detector_model and args.detector == "auto":
        args.detector = "yunet"
    files = sorted(f for f in args.photos.iterdir() if f.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no photos in {args.photos}")
    photos = [f.read_bytes() for f in files]
    server = load(args, photos)
    single = in_process(args, photos)
    print(json.dumps({
        "photos": len(photos), "clients": args.clients, "seconds": args.seconds, "detector": args.detector,
        "threads": args.threads, "workers": args.workers, "cpus": os.cpu_count(),
        "server": server, "predict_batch": single,
        "ratio": round(server["throughput_img_s"] / single["throughput_img_s"], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
