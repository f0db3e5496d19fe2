"""ClusterLoadAssignments: every live instance's inbound listener, per app id."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from tandem.xds.ir import Mesh
from tandem.xds.translate._protos import socket_address
from tandem.xds.translate.names import app_cluster


def load_assignment(mesh: Mesh, app_id: str) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=app_cluster(app_id),
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=socket_address(s.internal_address, s.internal_port)
                        )
                    )
                    for s in mesh.instances(app_id)
                ]
            )
        ],
    )


def load_assignments(mesh: Mesh) -> list[endpoint_pb2.ClusterLoadAssignment]:
    return [load_assignment(mesh, app) for app in mesh.app_ids()]
