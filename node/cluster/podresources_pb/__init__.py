"""Python stubs of the kubelet's PodResources v1 API (`api.proto`, vendored beside them).

Generated once and committed; `python -m node.cluster.podresources_pb.generate` regenerates them (it
needs grpcio-tools, in the test extra). See README.md.
"""
