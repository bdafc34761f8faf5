"""Field management, as kube-apiserver's FieldManager does it
(k8s.io/apimachinery/pkg/util/managedfields): every create and update records
which manager set which fields in metadata.managedFields, and server-side
apply merges an applied configuration into the live object, removes what the
applier dropped, and refuses to take fields other managers own.

A manager entry is keyed as upstream keys it: the JSON of its manager name,
operation, apiVersion (Update only) and subresource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..api import errors
from ..api.managedfields import (
    MISSING, ZERO, FieldSetError, Path, Shape, compare, contains, decode, encode, ensure_named_fields_are_members,
    equal, iterate, merge, path_string, recursive_difference, remove_items, shape_of, to_field_set,
)
from ..api.printers import now_rfc3339, parse_time
from ..api.registry import Kind

Obj = dict[str, Any]

APPLY_PATCH = "application/apply-patch+yaml"
APPLY, UPDATE = "Apply", "Update"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_MAX_MANAGER_LEN = 128
_MAX_UPDATE_MANAGERS = 10
_BEFORE_FIRST_APPLY = "before-first-apply"
_ANCIENT_CHANGES = "ancient-changes"
#: the manager whose applies also keep kubectl's client-side-apply annotation
_KUBECTL = "kubectl"

#: never part of a manager's fields (stripmeta.go)
_STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    *(("f:metadata", "f:" + f) for f in ("name", "namespace", "creationTimestamp", "selfLink", "uid",
                                          "clusterName", "generation", "managedFields", "resourceVersion")),
})


@dataclass(frozen=True)
class Manager:
    """Who writes: the field manager name and the subresource written."""

    name: str
    subresource: str = ""


#: the server's own writes (bootstrap objects), as kube-apiserver records them
KUBE_APISERVER = Manager("kube-apiserver")


# ---------------------------------------------------------------- request options

def prefix_from_user_agent(user_agent: str) -> str:
    """The manager name of a request without fieldManager: the User-Agent up
    to its first `/`, printable characters only, at most 128 bytes."""
    out, size = [], 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        n = len(ch.encode())
        if size + n > _MAX_MANAGER_LEN:
            break
        out.append(ch)
        size += n
    return "".join(out)


def _go_bool(value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def request_options(options_kind: str, query: Mapping[str, str], user_agent: str,
                    patch_type: str | None = None) -> tuple[str, bool]:
    """Validate{Create,Update,Patch}Options for the field manager and `force`;
    returns the manager name (the query's, else the User-Agent's) and force."""
    fm = query.get("fieldManager", "")
    force = _go_bool(query["force"]) if "force" in query else False
    errs: list[errors.FieldError] = []
    if patch_type is not None:
        if patch_type != APPLY_PATCH:
            if "force" in query:
                errs.append(errors.forbidden("force", "may not be specified for non-apply patch"))
        elif not fm:
            errs.append(errors.required("fieldManager", "is required for apply patch"))
    if len(fm.encode()) > _MAX_MANAGER_LEN:
        errs.append(errors.too_long("fieldManager", _MAX_MANAGER_LEN))
    for i, ch in enumerate(fm):
        if not ch.isprintable():
            errs.append(errors.invalid("fieldManager", fm, f"invalid character U+{ord(ch):04X} (at position {i})"))
    if errs:
        agg = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"
        raise errors.APIError(422, "Invalid", f'{options_kind}.meta.k8s.io "" is invalid: {agg}', {
            "group": "meta.k8s.io", "kind": options_kind,
            "causes": [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errs]})
    return fm or prefix_from_user_agent(user_agent), force


# ---------------------------------------------------------------- entries

class _Entry:
    """One manager's entry. An entry read from a stored object keeps its
    FieldsV1 as stored and is decoded only when a write touches its fields."""

    __slots__ = ("manager", "operation", "api_version", "subresource", "time", "_fields", "raw")

    def __init__(self, manager: str, operation: str, api_version: str, subresource: str, time: str | None,
                 fields: set[Path] | None = None, raw: dict[str, Any] | None = None) -> None:
        self.manager, self.operation, self.api_version = manager, operation, api_version
        self.subresource, self.time = subresource, time
        self._fields, self.raw = fields, raw

    @property
    def fields(self) -> set[Path]:
        if self._fields is None:
            self._fields = decode(self.raw)
        return self._fields

    @fields.setter
    def fields(self, value: set[Path]) -> None:
        self._fields, self.raw = value, None

    def touches(self, paths: set[Path]) -> bool:
        if self._fields is not None:
            return not self._fields.isdisjoint(paths)
        raw = self.raw or {}
        return any(contains(raw, p) for p in paths)

    def copy(self) -> _Entry:
        return _Entry(self.manager, self.operation, self.api_version, self.subresource, self.time, self._fields,
                      self.raw)


Managed = dict[str, _Entry]


def _key(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """BuildManagerIdentifier: the entry's JSON without fields and time (and
    without apiVersion for appliers, who own their fields in every version)."""
    out: dict[str, str] = {"manager": manager, "operation": operation}
    if api_version and operation != APPLY:
        out["apiVersion"] = api_version
    if subresource:
        out["subresource"] = subresource
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _entry_key(e: _Entry) -> str:
    return _key(e.manager, e.operation, e.api_version, e.subresource)


class _Undecodable(Exception):
    pass


def _decode(entries: Any, stored: bool = False) -> Managed:
    """DecodeManagedFields; raises _Undecodable on an entry upstream rejects.
    `stored` entries were encoded by this server, so their FieldsV1 is kept
    as it is until a write needs their fields."""
    out: Managed = {}
    if not entries:
        return out
    if not isinstance(entries, list):
        raise _Undecodable("managedFields must be a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise _Undecodable(f"managed fields entry {i} is not an object")
        op = e.get("operation")
        if op not in (APPLY, UPDATE):
            raise _Undecodable("operation must be `Apply` or `Update`")
        if not e.get("apiVersion"):
            raise _Undecodable("apiVersion must not be empty")
        ftype = e.get("fieldsType", "")
        if ftype != "FieldsV1":
            raise _Undecodable(f"missing fieldsType in managed fields entry {i}" if not ftype
                               else f'invalid fieldsType "{ftype}" in managed fields entry {i}')
        raw = e.get("fieldsV1") or {}
        if stored:
            entry = _Entry(e.get("manager", ""), op, e["apiVersion"], e.get("subresource", ""), e.get("time"),
                           raw=raw)
        else:
            try:
                fields = decode(raw)
            except FieldSetError as err:
                raise _Undecodable(f"error decoding versioned set: error decoding set: {err}") from None
            entry = _Entry(e.get("manager", ""), op, e["apiVersion"], e.get("subresource", ""), e.get("time"),
                           fields)
        out[_entry_key(entry)] = entry
    return out


def _seconds(t: str | None) -> int:
    return int(parse_time(t) or 0)


def _encode(managed: Managed) -> list[Obj]:
    """encodeManagedFields: one entry per manager, sorted as upstream sorts them."""
    entries = sorted(managed.values(), key=lambda e: (e.operation, _seconds(e.time), e.manager, e.api_version,
                                                      e.subresource))
    out = []
    for e in entries:
        d: Obj = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = e.raw if e.raw is not None else encode(e.fields)
        if e.subresource:
            d["subresource"] = e.subresource
        out.append(d)
    return out


def _store(obj: Obj, managed: Managed) -> None:
    meta = obj.setdefault("metadata", {})
    meta.pop("managedFields", None)
    if managed:
        meta["managedFields"] = _encode(managed)


def _is_reset(entries: Any) -> bool:
    """An explicit empty list, or a list of one empty entry, clears managedFields."""
    return isinstance(entries, list) and (not entries or (len(entries) == 1 and entries[0] == {}))


def _without_managed(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _reset_fields(kind: Kind, subresource: str) -> tuple[str, ...]:
    """The top-level fields a write through this endpoint cannot set
    (GetResetFields): the main resource of a kind with a status subresource
    leaves status alone, a status write leaves spec alone."""
    if subresource == "status":
        return ("spec",) if "spec" in kind.schema.fields else ()
    if not subresource and kind.has_status:
        return ("status",)
    return ()


def _cap_update_managers(managed: Managed) -> None:
    """capManagersManager: past ten Update entries the oldest are merged into
    one `ancient-changes` entry per apiVersion."""
    updaters = [k for k, e in managed.items() if e.operation == UPDATE]
    if len(updaters) <= _MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda k: (_seconds(managed[k].time), k))
    first: dict[str, str] = {}
    length = len(updaters)
    for k in updaters:
        if length <= _MAX_UPDATE_MANAGERS:
            break
        e = managed[k]
        bucket = _key(_ANCIENT_CHANGES, UPDATE, e.api_version, "")
        if e.api_version not in first:
            first[e.api_version] = k
            continue
        if bucket not in managed:
            f = managed.pop(first[e.api_version])
            managed[bucket] = _Entry(_ANCIENT_CHANGES, UPDATE, f.api_version, "", f.time, set(f.fields))
        b = managed[bucket]
        b.fields = e.fields | b.fields
        b.time = e.time
        del managed[k]
        length -= 1


# ---------------------------------------------------------------- updates

def _track(kind: Kind, shape: Shape, live: Obj | None, new: Obj, managed: Managed, manager: Manager,
           name: str) -> bool:
    """managedFieldsUpdater over Updater.Update: the fields this write changed
    move to the writer's entry (timestamped now), out of everyone else's.
    Returns whether any entry changed."""
    c = compare(shape, _without_managed(live) if live is not None else ZERO, new,
                skip=_reset_fields(kind, manager.subresource))
    changed = c.added | c.modified
    if not changed and not c.removed:
        return False
    gone = changed | c.removed
    for k in list(managed):
        e = managed[k]
        if e.touches(gone):
            fields = e.fields - gone
            if fields:
                e.fields = fields
            else:
                del managed[k]
    mine = (changed - c.removed) - _STRIPPED
    if mine:
        key = _key(name, UPDATE, kind.api_version, manager.subresource)
        prev = managed.get(key)
        managed[key] = _Entry(name, UPDATE, kind.api_version, manager.subresource, now_rfc3339(),
                              mine | prev.fields if prev else mine)
    return True


def track_update(kind: Kind, live: Obj | None, new: Obj, manager: Manager) -> None:
    """Record in `new`'s managedFields the fields `manager` set by creating
    (`live` None) or updating `live` into `new`. managedFields the request
    carries replace the live ones when they decode (not through a
    subresource); an object without any stays untracked until applied."""
    meta = new.setdefault("metadata", {})
    given = meta.pop("managedFields", None)
    live_entries = live.get("metadata", {}).get("managedFields") if live is not None else None
    managed: Managed | None = None
    # A client that sends back what it read (a read-modify-write) changes nothing.
    if not manager.subresource and given != live_entries:
        if _is_reset(given):
            managed = {}
        else:
            try:
                managed = _decode(given) or None
            except _Undecodable:
                managed = None
    from_live = managed is None
    if managed is None:
        try:
            managed = _decode(live_entries, stored=True)
        except _Undecodable:
            managed = {}
    if not managed and live is not None:
        return
    changed = _track(kind, shape_of(kind.schema), live, new, managed, manager, manager.name or "unknown")
    if from_live and not changed:
        if live_entries:
            meta["managedFields"] = live_entries
        return
    _cap_update_managers(managed)
    _store(new, managed)


# ---------------------------------------------------------------- apply

class _Conflicts(Exception):
    def __init__(self, conflicts: dict[str, set[Path]]) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


def _print_manager(key: str) -> str:
    e = json.loads(key)
    out = json.dumps(e.get("manager", ""), ensure_ascii=False)
    if e.get("subresource"):
        out += f' with subresource {json.dumps(e["subresource"], ensure_ascii=False)}'
    if e.get("operation") == UPDATE:
        out += f' using {e.get("apiVersion", "")}'
    return out


def conflict_error(conflicts: dict[str, set[Path]]) -> errors.APIError:
    """internal.NewConflictError: 409 with one cause per conflicting field."""
    items = [(k, p) for k in sorted(conflicts) for p in iterate(conflicts[k])]
    if len(items) == 1:
        k, p = items[0]
        message = f"Apply failed with 1 conflict: conflict with {_print_manager(k)}: {path_string(p)}"
    else:
        lines: list[str] = []
        for k in sorted(conflicts):
            lines.append(f"conflicts with {_print_manager(k)}:")
            lines.extend(f"- {path_string(p)}" for p in iterate(conflicts[k]))
        message = f"Apply failed with {len(items)} conflicts: " + "\n".join(lines)
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_print_manager(k)}",
               "field": path_string(p)} for k, p in items]
    return errors.APIError(409, "Conflict", message, {"causes": causes})


def _gvk(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _prune(shape: Shape, merged: Any, managed: Managed, last: set[Path]) -> Any:
    """Updater.prune: what the applier applied last time and dropped now goes,
    unless another manager (or the new configuration) owns it."""
    last_n = ensure_named_fields_are_members(shape, last)
    pruned = remove_items(shape, merged, last_n)
    owned: set[Path] = set()
    for e in managed.values():
        owned |= e.fields
    merged_set = ensure_named_fields_are_members(shape, to_field_set(shape, merged, strict=False))
    pruned_set = ensure_named_fields_are_members(shape, to_field_set(shape, pruned, strict=False))
    pruned = remove_items(shape, merged, merged_set - (pruned_set | ensure_named_fields_are_members(shape, owned)))
    pruned_set = ensure_named_fields_are_members(shape, to_field_set(shape, pruned, strict=False))
    return remove_items(shape, merged, (merged_set - pruned_set) & last_n)


def _apply_once(kind: Kind, shape: Shape, live: Obj | None, config: Obj, managed: Managed, manager: Manager,
                force: bool) -> tuple[Any, Managed]:
    """Updater.Apply with stripmeta and the timestamp: the merged object (MISSING
    when the apply changes nothing) and the new managers."""
    managed = {k: e.copy() for k, e in managed.items()}
    resets = _reset_fields(kind, manager.subresource)
    reset_paths = [("f:" + r,) for r in resets]
    meta = config.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        raise errors.bad_request("metadata.managedFields must be nil")
    try:
        applied = to_field_set(shape, config)
    except FieldSetError as e:
        meta = meta if isinstance(meta, dict) else {}
        raise errors.APIError(500, "", f"failed to create typed patch object ({meta.get('namespace', '')}/"
                                       f"{meta.get('name', '')}; {_gvk(kind.api_version, kind.kind)}): {e}") from None
    base = live if live is not None else {}
    merged = merge(shape, base, config)
    key = _key(manager.name, APPLY, "", manager.subresource)
    last = managed.get(key)
    managed[key] = _Entry(manager.name, APPLY, kind.api_version, manager.subresource, last.time if last else None,
                          recursive_difference(applied, reset_paths))
    if last is not None and last.fields:
        merged = _prune(shape, merged, managed, last.fields)
    c = compare(shape, live if live is not None else ZERO, merged, skip=resets)
    changed = c.added | c.modified
    conflicts = {k: e.fields & changed for k, e in managed.items() if k != key and e.touches(changed)}
    if conflicts and not force:
        raise _Conflicts(conflicts)
    gone = changed | c.removed
    for k in list(managed):
        if k != key and managed[k].touches(gone):
            fields = managed[k].fields - gone
            if fields:
                managed[k].fields = fields
            else:
                del managed[k]
    mine = managed[key].fields - _STRIPPED
    if mine:
        managed[key].fields = mine
    else:
        del managed[key]
    if equal(base, merged if merged is not MISSING else {}):
        return MISSING, managed
    if key in managed:
        managed[key].time = now_rfc3339()
    return merged, managed


def _allowed_by_last_applied(kind: Kind, shape: Shape, live: Obj) -> set[Path] | None:
    """lastAppliedManager: the fields kubectl's client-side apply annotation
    still describes, which a `kubectl` apply may take over without a conflict."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        last = json.loads(text)
        if not isinstance(last, dict) or last.get("apiVersion") != kind.api_version:
            return None
        fields = to_field_set(shape, last)
    except (ValueError, FieldSetError):
        return None
    c = compare(shape, last, live)
    return fields - c.modified - c.added - c.removed


def _last_applied_json(config: Obj) -> str:
    """The annotation kubectl's client-side apply would write for `config`."""
    cfg = json.loads(json.dumps(config))
    meta = cfg.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED, None)
    s = json.dumps(cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def apply(kind: Kind, live: Obj | None, config: Any, manager: Manager, force: bool) -> Obj:
    """Server-side apply of `config` by `manager` to `live` (None: create).
    Returns the object to store, managedFields included."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise errors.bad_request("error decoding patch: json: cannot unmarshal "
                                 f"{'array' if isinstance(config, list) else 'string'} into Go value of type "
                                 "map[string]interface {}")
    try:
        managed = _decode((live or {}).get("metadata", {}).get("managedFields"), stored=True)
    except _Undecodable as e:
        raise errors.APIError(500, "", f"failed to decode managed fields: {e}") from None
    if config.get("apiVersion") != kind.api_version or config.get("kind") != kind.kind:
        gvk = _gvk(str(config.get("apiVersion") or ""), str(config.get("kind") or ""))
        raise errors.bad_request(f"invalid object type: {gvk}")
    shape = shape_of(kind.schema)
    base = _without_managed(live) if live is not None else None
    if not managed and base is not None:
        _track(kind, shape, None, base, managed, manager, _BEFORE_FIRST_APPLY)
    try:
        merged, managed = _apply_once(kind, shape, base, config, managed, manager, force)
    except _Conflicts as e:
        allowed = _allowed_by_last_applied(kind, shape, base) if base and manager.name == _KUBECTL else None
        if allowed is None:
            raise conflict_error(e.conflicts) from None
        left = {k: ps - allowed for k, ps in e.conflicts.items() if ps - allowed}
        if left:
            raise conflict_error(left) from None
        merged, managed = _apply_once(kind, shape, base, config, managed, manager, True)
    out: Obj = json.loads(json.dumps(base)) if merged is MISSING else merged
    if manager.name == _KUBECTL and ((out.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED):
        out["metadata"]["annotations"][LAST_APPLIED] = _last_applied_json(config)
    _store(out, managed)
    return out

