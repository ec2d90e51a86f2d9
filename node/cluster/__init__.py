"""The rig's GPUs as Kubernetes sees them: hold pods that keep GPUs off the markets (`kube`) and
which pod holds which physical GPU, from the kubelet's PodResources API (`podresources`, with its
generated stubs in `podresources_pb`)."""
