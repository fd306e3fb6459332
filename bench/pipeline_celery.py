"""The Celery side of bench/pipeline: the same work as Squall's pipeline, done the Celery way.

One task per target: GET the source over HTTP, PUT it to S3 with boto3 (or write a local file),
then record the outcome in PostgreSQL. The broker is the same RabbitMQ, the database the same
PostgreSQL. Settings an operator would choose for reliable work: acks_late (a job is acked only
after the task returned), prefetch multiplier 4, one result row per job written by the task.

    python3 bench/pipeline_celery.py worker  --concurrency N
    python3 bench/pipeline_celery.py drive   --manifest FILE --mode s3|file --timeout S

The driver creates the results table, publishes every task, waits until the table holds a row per
job, and prints one JSON line: {"jobs": …, "seconds": …, "failed": …}.
"""

import argparse
import csv
import json
import os
import sys
import time
import urllib.request

import boto3
import psycopg
from botocore.config import Config
from celery import Celery

BROKER = os.environ["BENCH_CELERY_BROKER"]  # amqp://user:pass@host:port/vhost
DATABASE = os.environ["BENCH_CELERY_DATABASE"]  # postgresql://…
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench.celery")

app = Celery("squall_bench", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_s3 = None
_db = None


def s3():
    global _s3
    if _s3 is None:
        _s3 = boto3.client(
            "s3",
            endpoint_url=os.environ["SQUALL_S3_ENDPOINT"],
            region_name=os.environ.get("SQUALL_S3_REGION", "us-east-1"),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )
    return _s3


def db():
    global _db
    if _db is None:
        _db = psycopg.connect(DATABASE, autocommit=True)
    return _db


@app.task(name="fetch")
def fetch(job_id, source, destination):
    started = time.monotonic()
    try:
        with urllib.request.urlopen(source, timeout=30) as response:
            body = response.read()
        if destination.startswith("s3://"):
            bucket, key = destination[len("s3://") :].split("/", 1)
            s3().put_object(Bucket=bucket, Key=key, Body=body)
        else:
            path = destination[len("file://") :] if destination.startswith("file://") else destination
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(body)
        state, error = "done", None
    except Exception as failure:  # recorded, as Squall records a failed job
        state, error = "failed", f"{type(failure).__name__}: {failure}"[:500]
    db().execute(
        "INSERT INTO bench_celery_results (job_id, state, error, duration_ms) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, error = excluded.error",
        (job_id, state, error, int((time.monotonic() - started) * 1000)),
    )


def drive(arguments):
    with open(arguments.manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with psycopg.connect(DATABASE, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_celery_results")
        connection.execute(
            "CREATE TABLE bench_celery_results (job_id bigint PRIMARY KEY, state text NOT NULL, error text,"
            " duration_ms bigint)"
        )
        started = time.monotonic()
        with app.producer_or_acquire() as producer:
            for index, row in enumerate(rows, start=1):
                fetch.apply_async((index, row["source"], row["destination"]), producer=producer)
        deadline = started + arguments.timeout
        while True:
            done = connection.execute("SELECT count(*) FROM bench_celery_results").fetchone()[0]
            if done >= len(rows):
                break
            if time.monotonic() > deadline:
                print(json.dumps({"error": f"timeout: {done} of {len(rows)} jobs recorded"}))
                return 2
            time.sleep(0.1)
        seconds = time.monotonic() - started
        failed = connection.execute("SELECT count(*) FROM bench_celery_results WHERE state <> 'done'").fetchone()[0]
    print(json.dumps({"jobs": len(rows), "seconds": round(seconds, 3), "failed": failed}))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a Celery worker (prefork pool)")
    worker.add_argument("--concurrency", type=int, default=8)
    driver = commands.add_parser("drive", help="publish the manifest's jobs and wait for every result row")
    driver.add_argument("--manifest", required=True)
    driver.add_argument("--timeout", type=float, default=1800)
    arguments = parser.parse_args()
    if arguments.command == "worker":
        app.worker_main(
            ["worker", "--loglevel=WARNING", "--pool=prefork", f"--concurrency={arguments.concurrency}",
             "--without-gossip", "--without-mingle", "--without-heartbeat", f"--queues={QUEUE}"]
        )
        return 0
    return drive(arguments)


if __name__ == "__main__":
    sys.exit(main())
