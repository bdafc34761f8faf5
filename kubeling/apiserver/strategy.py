"""Per-kind REST strategies: what the server does to an object on create,
update and delete beyond schema defaults and validation (upstream keeps these
in pkg/registry/<group>/<kind>/strategy.go)."""

from __future__ import annotations

from typing import Any

from ..api.kinds.daemonset import set_template_generation, template_generation
from ..api.kinds.pod import prepare_for_create as prepare_pod_for_create

Obj = dict[str, Any]


class Strategy:
    #: top-level keys whose change bumps metadata.generation ("metadata.annotations" allowed)
    generation_keys: tuple[str, ...] = ()
    allow_create_on_update = False
    #: status is cleared on create (most kinds with a status subresource)
    reset_status_on_create = True
    #: DELETE answers with the deleted object rather than a Success Status
    return_deleted_object = False
    #: the propagationPolicy of a DELETE that names none (upstream's DefaultGarbageCollectionPolicy;
    #: "" is Background)
    default_propagation = ""

    def initial_status(self, obj: Obj) -> Obj:
        return {}

    def prepare_create(self, obj: Obj) -> None:
        """Kind-specific changes on create, after defaults."""

    def prepare_update(self, new: Obj, old: Obj) -> None:
        """Kind-specific changes on an update of the object itself (not a subresource), after defaults."""

    def grace_period(self, obj: Obj, requested: int | None) -> int:
        """Seconds of graceful deletion; 0 deletes at once."""
        return 0

    def finalizers(self, obj: Obj) -> list[str]:
        """Finalizers that keep a deleted object in the store."""
        return list(obj.get("metadata", {}).get("finalizers") or [])

    def mark_deleting(self, obj: Obj) -> None:
        """Changes when deletion starts but cannot finish yet."""

    def changed_generation(self, new: Obj, old: Obj) -> bool:
        for key in self.generation_keys:
            if key == "metadata.annotations":
                if new["metadata"].get("annotations") != old["metadata"].get("annotations"):
                    return True
            elif new.get(key) != old.get(key):
                return True
        return False


class PodStrategy(Strategy):
    generation_keys = ("spec",)
    return_deleted_object = True

    def prepare_create(self, obj: Obj) -> None:
        prepare_pod_for_create(obj)

    def grace_period(self, obj: Obj, requested: int | None) -> int:
        spec = obj.get("spec", {})
        if not spec.get("nodeName"):
            return 0
        if obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        return int(spec.get("terminationGracePeriodSeconds", 30))


class DeploymentStrategy(Strategy):
    # Annotations are copied to ReplicaSets, so their changes are spec changes too.
    generation_keys = ("spec", "metadata.annotations")


class ReplicaSetStrategy(Strategy):
    generation_keys = ("spec",)


class DaemonSetStrategy(Strategy):
    """apps/v1 carries the internal spec.templateGeneration in an annotation: it starts at 1 and only
    the server moves it, one up with every template change (upstream's PrepareForCreate/Update)."""

    generation_keys = ("spec",)

    def prepare_create(self, obj: Obj) -> None:
        set_template_generation(obj, max(template_generation(obj) or 0, 1))

    def prepare_update(self, new: Obj, old: Obj) -> None:
        # whatever the client sent, the annotation follows the stored one
        generation = template_generation(old) or 0
        if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            generation += 1
        set_template_generation(new, generation)


class JobStrategy(Strategy):
    generation_keys = ("spec",)
    # batch/v1 keeps the pods of a Job deleted without a policy (kubectl always names one)
    default_propagation = "Orphan"


class CronJobStrategy(Strategy):
    # Its default garbage collection policy stays Background: a deleted CronJob takes its Jobs along.
    generation_keys = ("spec",)


class ServiceStrategy(Strategy):
    return_deleted_object = True

    def initial_status(self, obj: Obj) -> Obj:
        return {"loadBalancer": {}}


class NamespaceStrategy(Strategy):
    def initial_status(self, obj: Obj) -> Obj:
        return {"phase": "Active"}

    def prepare_create(self, obj: Obj) -> None:
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]

    def finalizers(self, obj: Obj) -> list[str]:
        return super().finalizers(obj) + list(obj.get("spec", {}).get("finalizers") or [])

    def mark_deleting(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"


class NodeStrategy(Strategy):
    reset_status_on_create = False


class CreateOnUpdateStrategy(Strategy):
    allow_create_on_update = True


class EndpointSliceStrategy(Strategy):
    generation_keys = ("endpoints", "ports", "addressType")


_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("", "Pod"): PodStrategy(),
    ("apps", "Deployment"): DeploymentStrategy(),
    ("apps", "ReplicaSet"): ReplicaSetStrategy(),
    ("apps", "DaemonSet"): DaemonSetStrategy(),
    ("batch", "Job"): JobStrategy(),
    ("batch", "CronJob"): CronJobStrategy(),
    ("", "Service"): ServiceStrategy(),
    ("", "Namespace"): NamespaceStrategy(),
    ("", "Node"): NodeStrategy(),
    ("", "Endpoints"): CreateOnUpdateStrategy(),
    ("", "Event"): CreateOnUpdateStrategy(),
    ("coordination.k8s.io", "Lease"): CreateOnUpdateStrategy(),
    ("discovery.k8s.io", "EndpointSlice"): EndpointSliceStrategy(),
}
_DEFAULT = Strategy()


def strategy_for(group: str, kind: str) -> Strategy:
    return _STRATEGIES.get((group, kind), _DEFAULT)

