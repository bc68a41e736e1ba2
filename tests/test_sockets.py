"""common.sockets: multipart sends through pyzmq's compiled methods behave as send_multipart does."""

from __future__ import annotations

import errno

import pytest
import zmq

from common.sockets import NOBLOCK, recv_frames, send_frames


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_frames_arrive_as_one_message_in_order(context, tmp_path):
    sender, receiver = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    endpoint = f"ipc://{tmp_path}/frames.sock"
    receiver.bind(endpoint)
    sender.connect(endpoint)
    send_frames(sender, [b"a", memoryview(b"bb"), bytearray(b"ccc")])
    send_frames(sender, (b"only",), copy=False)
    assert receiver.poll(5000)
    assert receiver.recv_multipart() == [b"a", b"bb", b"ccc"]
    assert receiver.poll(5000)
    assert receiver.recv_multipart() == [b"only"]


def test_an_unknown_router_peer_and_a_full_queue_raise_as_pyzmq_does(context, tmp_path):
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind(f"ipc://{tmp_path}/router.sock")
    with pytest.raises(zmq.ZMQError) as raised:
        send_frames(router, [b"nobody", b"x"], NOBLOCK)
    assert raised.value.errno == errno.EHOSTUNREACH
    pusher = context.socket(zmq.PUSH)
    pusher.setsockopt(zmq.IMMEDIATE, 1)  # no queue before a peer connects
    pusher.connect(f"ipc://{tmp_path}/nobody-listens.sock")  # no peer: nothing can be queued
    with pytest.raises(zmq.Again):
        send_frames(pusher, [b"a", b"b"], NOBLOCK)


def test_frames_are_received_as_recv_multipart_gives_them(context, tmp_path):
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"client-1")
    router.bind(f"ipc://{tmp_path}/router.sock")
    dealer.connect(f"ipc://{tmp_path}/router.sock")
    with pytest.raises(zmq.Again):
        recv_frames(router, NOBLOCK)
    dealer.send(b"one")
    dealer.send_multipart([b"two", b"", b"three"])
    assert router.poll(5000)
    assert recv_frames(router, NOBLOCK) == [b"client-1", b"one"]
    assert router.poll(5000)
    frames = recv_frames(router)
    assert frames == [b"client-1", b"two", b"", b"three"] and all(type(frame) is bytes for frame in frames)
    with pytest.raises(zmq.Again):
        recv_frames(router, NOBLOCK)
