"""HTTP/2 flow control shared by the client side (h2server) and the backend side (upstream_h2)."""

from __future__ import annotations

from collections import deque

import h2.connection

__all__ = ["send_within_window"]


def send_within_window(h2conn: h2.connection.H2Connection, stream_id: int,
                       pending: deque[memoryview]) -> int:
    """Send DATA frames from ``pending`` as far as the peer's windows allow; bytes sent.

    What does not fit stays at the front of ``pending``. h2's ProtocolError (the peer reset or
    closed the stream) is the caller's to handle.
    """
    sent = 0
    while pending:
        window = min(h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size)
        if window <= 0:
            break
        chunk = pending[0]
        size = min(window, len(chunk))
        h2conn.send_data(stream_id, chunk[:size].tobytes())
        if size == len(chunk):
            pending.popleft()
        else:
            pending[0] = chunk[size:]
        sent += size
    return sent
