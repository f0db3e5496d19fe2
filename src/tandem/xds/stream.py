"""The state-of-the-world ADS protocol for one stream, as a plain state machine.

Feed it requests (:meth:`AdsStream.on_request`) and snapshots (:meth:`AdsStream.on_snapshot`);
it returns the responses to send, in push order. No I/O, so it is tested without gRPC.

Rules kept here (see the xDS protocol docs):
- one response in flight per type: after sending, wait for the request carrying its nonce;
- a request whose nonce is not the latest one sent for its type is stale and ignored;
- ``error_detail`` present means NACK: log it and do not resend the rejected version;
- a version already sent (with the same names) is not sent again; the first request of a
  type on a stream is always answered, since the client may hold nothing yet;
- LDS/CDS are wildcard (full set every time); RDS/EDS carry only the names requested.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from tandem.xds import resource_types as rt
from tandem.xds.cache import Snapshot


@dataclass(slots=True)
class _TypeState:
    subscribed: bool = False
    names: frozenset[str] = frozenset()
    nonce: str = ""
    in_flight: bool = False
    must_answer: bool = False
    sent_version: str = ""
    sent_names: frozenset[str] | None = None
    acked_version: str = ""


@dataclass(slots=True)
class StreamCounters:
    responses: int = 0
    acks: int = 0
    nacks: int = 0
    stale: int = 0


@dataclass(slots=True)
class AdsStream:
    """Protocol state of one ADS stream for one node."""

    node_id: str
    log: logging.Logger
    snapshot: Snapshot | None = None
    counters: StreamCounters = field(default_factory=StreamCounters)
    _types: dict[str, _TypeState] = field(default_factory=dict)
    _nonce: int = 0

    def on_snapshot(self, snapshot: Snapshot) -> list[discovery_pb2.DiscoveryResponse]:
        self.snapshot = snapshot
        return self._push(rt.PUSH_ORDER)

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest
    ) -> list[discovery_pb2.DiscoveryResponse]:
        url = request.type_url
        state = self._types.setdefault(url, _TypeState())
        short = rt.SHORT_NAMES.get(url, url)
        if request.response_nonce and request.response_nonce != state.nonce:
            # A newer response of this type is already on its way; this request is history.
            self.counters.stale += 1
            self.log.debug(
                "stale nonce ignored",
                extra={"node": self.node_id, "type": short, "nonce": request.response_nonce},
            )
            return []
        if request.response_nonce:
            state.in_flight = False
            if request.HasField("error_detail"):
                self.counters.nacks += 1
                self.log.warning(
                    "NACK",
                    extra={
                        "node": self.node_id,
                        "type": short,
                        "rejected_version": state.sent_version,
                        "kept_version": request.version_info,
                        "code": request.error_detail.code,
                        "detail": request.error_detail.message,
                    },
                )
            else:
                self.counters.acks += 1
                state.acked_version = request.version_info
                self.log.debug(
                    "ACK",
                    extra={"node": self.node_id, "type": short, "version": request.version_info},
                )
        else:
            # First request of this type on this stream (also after a reconnect, when the
            # client reports the version it holds): always answer it.
            state.must_answer = True
        state.subscribed = True
        names = frozenset(request.resource_names)
        names = frozenset() if url in rt.WILDCARD_TYPES or "*" in names else names
        if names != state.names:
            # A changed subscription is always answered: a cluster removed and added back
            # needs its assignment again even though the version did not move.
            state.must_answer = True
        state.names = names
        return self._push((url,))

    def _push(self, urls: tuple[str, ...]) -> list[discovery_pb2.DiscoveryResponse]:
        out = []
        for url in rt.PUSH_ORDER:
            if url in urls:
                response = self._maybe_respond(url)
                if response is not None:
                    out.append(response)
        return out

    def _maybe_respond(self, url: str) -> discovery_pb2.DiscoveryResponse | None:
        state = self._types.get(url)
        if self.snapshot is None or state is None or not state.subscribed or state.in_flight:
            return None
        available = self.snapshot.of_type(url)
        if url in rt.WILDCARD_TYPES:
            names = sorted(available)
        else:
            names = sorted(n for n in state.names if n in available)
            if not names:
                # Nothing requested that we hold: an empty named response would say nothing.
                return None
        version = self.snapshot.version(url)
        chosen = frozenset(names)
        if not state.must_answer and version == state.sent_version and chosen == state.sent_names:
            return None
        self._nonce += 1
        nonce = str(self._nonce)
        resources = []
        for name in names:
            packed = any_pb2.Any()
            packed.Pack(available[name])
            resources.append(packed)
        state.nonce = nonce
        state.in_flight = True
        state.must_answer = False
        state.sent_version = version
        state.sent_names = chosen
        self.counters.responses += 1
        self.log.debug(
            "send",
            extra={
                "node": self.node_id,
                "type": rt.SHORT_NAMES.get(url, url),
                "version": version,
                "nonce": nonce,
                "resources": len(resources),
            },
        )
        return discovery_pb2.DiscoveryResponse(
            version_info=version, resources=resources, type_url=url, nonce=nonce
        )
