#!/usr/bin/env python3
"""The pika side of bench/transport: the same work as Squall's TransportBench, in pika.

Batched confirms (publish BATCH messages, wait for all confirms, repeat), then consume with
basic.qos PREFETCH acking every ACK_EVERY deliveries with multiple=True; 1 KiB persistent
messages into a quorum queue. Uses pika's SelectConnection (its fastest, asynchronous adapter).

Usage: transport_pika.py AMQP_URL QUEUE MESSAGES BATCH PREFETCH ACK_EVERY
       transport_pika.py AMQP_URL --delete NAME...   (clean-up: queues, then exchanges)
"""
import json
import os
import sys
import time

import pika


def broker_cpu():
    """The broker's user + system CPU seconds so far, when BENCH_BROKER_PID names it; else None."""
    pid = os.environ.get("BENCH_BROKER_PID")
    if not pid:
        return None
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publish(params, queue, messages, batch, body):
    state = {"sent": 0, "pending": set(), "next_tag": 1, "start": None, "end": None, "error": None}
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel):
        state["channel"] = channel
        channel.confirm_delivery(on_confirm, callback=lambda _: channel.queue_declare(
            queue, durable=True, arguments={"x-queue-type": "quorum"}, callback=lambda _: start(channel)))

    def start(channel):
        state["start"] = time.perf_counter()
        state["cpu"] = time.process_time()
        state["broker"] = broker_cpu()
        publish_batch(channel)

    def publish_batch(channel):
        count = min(batch, messages - state["sent"])
        for _ in range(count):
            channel.basic_publish("", queue, body, props, mandatory=True)
            state["pending"].add(state["next_tag"])
            state["next_tag"] += 1
        state["sent"] += count

    def on_confirm(frame):
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            state["error"] = "nack"
        tag = method.delivery_tag
        if method.multiple:
            state["pending"] = {t for t in state["pending"] if t > tag}
        else:
            state["pending"].discard(tag)
        if not state["pending"]:
            if state["sent"] >= messages:
                state["end"] = time.perf_counter()
                state["cpu"] = time.process_time() - state["cpu"]
                if state["broker"] is not None:
                    state["broker"] = broker_cpu() - state["broker"]
                connection.close()
            else:
                publish_batch(state["channel"])

    connection = pika.SelectConnection(params, on_open_callback=on_open, on_close_callback=lambda closed, _reason: closed.ioloop.stop())
    connection.ioloop.start()
    if state["error"]:
        raise SystemExit("pika publish: " + state["error"])
    return messages / (state["end"] - state["start"]), state["cpu"] * 1e6 / messages, state["broker"]


def consume(params, queue, messages, prefetch, ack_every):
    state = {"received": 0, "start": None, "end": None}

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel):
        channel.basic_qos(prefetch_count=prefetch, callback=lambda _: start(channel))

    def start(channel):
        state["start"] = time.perf_counter()
        state["cpu"] = time.process_time()
        state["broker"] = broker_cpu()
        channel.basic_consume(queue, on_message)

    def on_message(channel, method, properties, body):
        state["received"] += 1
        if state["received"] % ack_every == 0 or state["received"] == messages:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if state["received"] == messages:
            state["end"] = time.perf_counter()
            state["cpu"] = time.process_time() - state["cpu"]
            if state["broker"] is not None:
                state["broker"] = broker_cpu() - state["broker"]
            connection.close()

    connection = pika.SelectConnection(params, on_open_callback=on_open, on_close_callback=lambda closed, _reason: closed.ioloop.stop())
    connection.ioloop.start()
    return messages / (state["end"] - state["start"]), state["cpu"] * 1e6 / messages, state["broker"]


def delete(params, names):
    connection = pika.BlockingConnection(params)
    for name in names:
        channel = connection.channel()
        try:
            channel.queue_delete(name)
        except Exception:
            channel = connection.channel()
        try:
            channel.exchange_delete(name)
        except Exception:
            pass
    connection.close()


def main():
    params = pika.URLParameters(sys.argv[1])
    if sys.argv[2] == "--delete":
        delete(params, sys.argv[3:])
        return
    queue, messages, batch, prefetch, ack_every = sys.argv[2], *map(int, sys.argv[3:7])
    body = bytes((i * 7) % 256 for i in range(1024))
    publish_rate, publish_cpu, publish_broker = publish(params, queue, messages, batch, body)
    consume_rate, consume_cpu, consume_broker = consume(params, queue, messages, prefetch, ack_every)
    result = {"publish_per_second": publish_rate, "consume_per_second": consume_rate,
              "publish_cpu_us_per_message": publish_cpu, "consume_cpu_us_per_message": consume_cpu}
    if publish_broker is not None and consume_broker is not None:
        result["broker_publish_cpu_us_per_message"] = publish_broker * 1e6 / messages
        result["broker_consume_cpu_us_per_message"] = consume_broker * 1e6 / messages
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
