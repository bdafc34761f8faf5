"""One module per kind; `registry` imports them all on first use."""

MODULES = (
    "namespace", "pod", "service", "endpoints", "node", "event", "configmap", "secret", "serviceaccount",
    "deployment", "replicaset", "daemonset", "controllerrevision", "scale", "endpointslice", "lease",
    "resourcequota", "limitrange", "job", "cronjob",
    "selfsubjectaccessreview", "selfsubjectrulesreview", "selfsubjectreview",
)
