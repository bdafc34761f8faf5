"""meta.k8s.io/v1 types shared by every kind, and the helper that builds a
kind's top-level struct (apiVersion, kind, metadata, spec, status)."""

from __future__ import annotations

from .schema import (
    BOOL, FIELDS_V1, INT64, STRING, TIME, Field, ListOf, MapOf, Struct,
)

META = "io.k8s.apimachinery.pkg.apis.meta.v1"

# TypeMeta fields are not part of a kind's protobuf message (runtime.Unknown
# carries them), so they get numbers the protobuf codec never sees.
TYPEMETA_API_VERSION = -1
TYPEMETA_KIND = -2

OWNER_REFERENCE = Struct(f"{META}.OwnerReference", [
    Field("apiVersion", STRING, 5, "API version of the referent.", required=True),
    Field("kind", STRING, 1, "Kind of the referent.", required=True),
    Field("name", STRING, 3, "Name of the referent.", required=True),
    Field("uid", STRING, 4, "UID of the referent.", required=True),
    Field("controller", BOOL, 6, "If true, this reference points to the managing controller.", pointer=True),
    Field("blockOwnerDeletion", BOOL, 7,
          "If true, AND if the owner has the \"foregroundDeletion\" finalizer, then the owner cannot be "
          "deleted from the key-value store until this reference is removed.", pointer=True),
], doc="OwnerReference contains enough information to let you identify an owning object.")

MANAGED_FIELDS_ENTRY = Struct(f"{META}.ManagedFieldsEntry", [
    Field("manager", STRING, 1, "Manager is an identifier of the workflow managing these fields."),
    Field("operation", STRING, 2, "Operation is the type of operation which lead to this ManagedFieldsEntry being created."),
    Field("apiVersion", STRING, 3, "APIVersion defines the version of this resource that this field set applies to."),
    Field("time", TIME, 4, "Time is the timestamp of when the ManagedFields entry was added."),
    Field("fieldsType", STRING, 6, "FieldsType is the discriminator for the different fields format and version."),
    Field("fieldsV1", FIELDS_V1, 7, "FieldsV1 holds the first JSON version format as described in the \"FieldsV1\" type."),
    Field("subresource", STRING, 8, "Subresource is the name of the subresource used to update that object."),
], doc="ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.")

OBJECT_META = Struct(f"{META}.ObjectMeta", [
    Field("name", STRING, 1, "Name must be unique within a namespace."),
    Field("generateName", STRING, 2,
          "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
    Field("namespace", STRING, 3, "Namespace defines the space within which each name must be unique."),
    Field("selfLink", STRING, 4, "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."),
    Field("uid", STRING, 5, "UID is the unique in time and space value for this object."),
    Field("resourceVersion", STRING, 6,
          "An opaque value that represents the internal version of this object that can be used by clients to determine when objects have changed."),
    Field("generation", INT64, 7, "A sequence number representing a specific generation of the desired state."),
    Field("creationTimestamp", TIME, 8, "CreationTimestamp is a timestamp representing the server time when this object was created."),
    Field("deletionTimestamp", TIME, 9,
          "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
    Field("deletionGracePeriodSeconds", INT64, 10,
          "Number of seconds allowed for this object to gracefully terminate before it will be removed from the system.",
          pointer=True),
    Field("labels", MapOf(STRING), 11,
          "Map of string keys and values that can be used to organize and categorize (scope and select) objects."),
    Field("annotations", MapOf(STRING), 12,
          "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."),
    Field("ownerReferences", ListOf(OWNER_REFERENCE), 13,
          "List of objects depended by this object.", merge_key="uid", patch_strategy="merge",
          list_type="map", list_map_keys=("uid",)),
    Field("finalizers", ListOf(STRING), 14,
          "Must be empty before the object is deleted from the registry.", patch_strategy="merge", list_type="set"),
    Field("managedFields", ListOf(MANAGED_FIELDS_ENTRY), 17,
          "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."),
], doc="ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.")

LIST_META = Struct(f"{META}.ListMeta", [
    Field("selfLink", STRING, 1, "Deprecated."),
    Field("resourceVersion", STRING, 2, "String that identifies the server's internal version of this object."),
    Field("continue", STRING, 3, "continue may be set if the user set a limit on the number of items returned."),
    Field("remainingItemCount", INT64, 4, "remainingItemCount is the number of subsequent items in the list.",
          pointer=True),
], doc="ListMeta describes metadata that synthetic resources must have, including lists and various status objects.")

LABEL_SELECTOR_REQUIREMENT = Struct(f"{META}.LabelSelectorRequirement", [
    Field("key", STRING, 1, "key is the label key that the selector applies to.", required=True),
    Field("operator", STRING, 2,
          "operator represents a key's relationship to a set of values. Valid operators are In, NotIn, Exists and DoesNotExist.",
          required=True),
    Field("values", ListOf(STRING), 3, "values is an array of string values.", list_type="atomic"),
], doc="A label selector requirement is a selector that contains values, a key, and an operator that relates the key and values.")

LABEL_SELECTOR = Struct(f"{META}.LabelSelector", [
    Field("matchLabels", MapOf(STRING), 1, "matchLabels is a map of {key,value} pairs."),
    Field("matchExpressions", ListOf(LABEL_SELECTOR_REQUIREMENT), 2,
          "matchExpressions is a list of label selector requirements. The requirements are ANDed.", list_type="atomic"),
], doc="A label selector is a label query over a set of resources.", atomic=True)

CONDITION = Struct(f"{META}.Condition", [
    Field("type", STRING, 1, "type of condition in CamelCase or in foo.example.com/CamelCase.", required=True),
    Field("status", STRING, 2, "status of the condition, one of True, False, Unknown.", required=True),
    Field("observedGeneration", INT64, 3, "observedGeneration represents the .metadata.generation that the condition was set based upon."),
    Field("lastTransitionTime", TIME, 4, "lastTransitionTime is the last time the condition transitioned from one status to another.", required=True),
    Field("reason", STRING, 5, "reason contains a programmatic identifier indicating the reason for the condition's last transition.", required=True),
    Field("message", STRING, 6, "message is a human readable message indicating details about the transition.", required=True),
], doc="Condition contains details for one aspect of the current state of this API Resource.")

API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                   "convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
                   "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may infer "
            "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
METADATA_DOC = ("Standard object's metadata. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def top_level(name: str, fields: list[Field], doc: str = "") -> Struct:
    """A kind's top-level struct: TypeMeta, `metadata` (proto 1), then its own fields."""
    return Struct(name, [
        Field("apiVersion", STRING, TYPEMETA_API_VERSION, API_VERSION_DOC),
        Field("kind", STRING, TYPEMETA_KIND, KIND_DOC),
        Field("metadata", OBJECT_META, 1, METADATA_DOC),
        *fields,
    ], doc=doc)


def list_of(item: Struct, doc: str = "") -> Struct:
    """The <Kind>List struct (metadata = ListMeta, items proto 2)."""
    return Struct(item.name + "List" if item.name else "List", [
        Field("apiVersion", STRING, TYPEMETA_API_VERSION, API_VERSION_DOC),
        Field("kind", STRING, TYPEMETA_KIND, KIND_DOC),
        Field("metadata", LIST_META, 1, "Standard list metadata."),
        Field("items", ListOf(item), 2, f"List of {item.type_name()} objects.", required=True),
    ], doc=doc or f"{item.type_name()}List is a list of {item.type_name()} objects.")


__all__ = [
    "OBJECT_META", "LIST_META", "OWNER_REFERENCE", "LABEL_SELECTOR", "LABEL_SELECTOR_REQUIREMENT",
    "MANAGED_FIELDS_ENTRY", "CONDITION", "top_level", "list_of",
]
