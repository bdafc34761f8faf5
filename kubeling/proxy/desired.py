"""The table the proxy wants, kept per Service, and the transactions that
bring the kernel's copy of it up to date.

Each Service renders to a `Fragment` of its own. Updating a Service compares
its new fragment with its old one and touches only the chains, sets and map
elements that differ. The first time one of them is touched after the last
applied transaction, its applied value is remembered, so `transaction()`
names exactly what changed since, however many updates came in between (a
change and its undo cancel out). A sync therefore costs in proportion to the
Services that changed, not to the table: at 5,000 Services, re-rendering and
comparing everything each time took 25-35 ms (bench/bench_proxy.py).

Two Services may claim one map key (the same external IP and port): the
first by namespace/name holds it, as a kernel map holds one verdict per key,
and when it lets go the next claimant takes over.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .ruleset import (
    AFFINITY_SET_SPEC,
    EMPTY,
    ENDPOINT_SELF,
    MAPS,
    NODEPORT_IPS,
    SERVICE_NAME_LABEL,
    Fragment,
    RenderOptions,
    base_commands,
    element_commands,
    nodeport_ips,
    render_service,
)

Obj = dict[str, Any]


class _Absent:
    """What an element's value is when the element is not in its map."""


ABSENT = _Absent()
Value = str | None | _Absent
#: a Service's claim on a map key: (map, verdict)
Claim = tuple[str, str | None]


def service_key(obj: Obj) -> str:
    """"namespace/name" of a Service."""
    meta = obj["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def slice_service_key(obj: Obj) -> str | None:
    """"namespace/name" of the Service an EndpointSlice belongs to, if any."""
    meta = obj["metadata"]
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', 'default')}/{name}" if name else None


class DesiredTable:
    """The proxy's nftables table for one node: what every Service wants in
    it, and what changed since the last `commit()`."""

    def __init__(self, options: RenderOptions, node_name: str) -> None:
        self.options = options
        self.node_name = node_name
        self.table = options.table
        self.base = base_commands(options)
        #: per-service chains: name -> rules
        self.chains: dict[str, tuple[str, ...]] = {}
        #: per-service sets (session affinity): name -> "{ type ...; flags ...; }"
        self.sets: dict[str, str] = {}
        #: elements of the skeleton's maps and sets: name -> key -> verdict (None in sets)
        self.elements: dict[str, dict[str, str | None]] = {m: {} for m in (*MAPS, ENDPOINT_SELF)}
        if options.nodeport_addresses:
            self.elements[NODEPORT_IPS] = {}
        #: service ports that produced rules, and their usable endpoints (for metrics)
        self.service_ports = 0
        self.endpoints = 0
        self._base_rules = sum(1 for c in self.base if c.startswith("add rule "))
        self._base_chains = sum(1 for c in self.base if c.startswith("add chain "))
        self._service_rules = 0
        self._fragments: dict[str, Fragment] = {}
        #: map key -> the Service holding it and its claim, which is in the table
        self._held: dict[str, tuple[str, Claim]] = {}
        #: map key -> the claims of the other Services that want it (rare)
        self._waiting: dict[str, dict[str, Claim]] = {}
        #: endpoint-self element -> how many Services hold it
        self._self_refs: dict[str, int] = {}
        # Applied values of what was touched since the last commit.
        self._chains_before: dict[str, tuple[str, ...] | None] = {}
        self._sets_before: dict[str, str | None] = {}
        self._elements_before: dict[tuple[str, str], Value] = {}

    # ------------------------------------------------------------------ counts

    @property
    def rule_count(self) -> int:
        return self._base_rules + self._service_rules

    @property
    def chain_count(self) -> int:
        return self._base_chains + len(self.chains)

    @property
    def element_count(self) -> int:
        return sum(len(e) for e in self.elements.values())

    @property
    def services(self) -> list[str]:
        """The Services that put something in the table ("namespace/name")."""
        return list(self._fragments)

    # ------------------------------------------------------------------ changes

    def update(self, key: str, service: Obj | None, slices: Iterable[Obj]) -> None:
        """Re-render the Service `key` ("namespace/name") from its object and
        EndpointSlices; None: it is gone."""
        new = EMPTY if service is None else render_service(service, list(slices), self.node_name, self.options)
        old = self._fragments.pop(key, EMPTY)
        if new is not EMPTY:
            self._fragments[key] = new
        if new == old:
            return
        wanted = dict(new.chains)
        for name, _ in old.chains:
            if name not in wanted:
                self._put_chain(name, None)
        for name, rules in new.chains:
            self._put_chain(name, rules)
        kept = set(new.sets)
        for name in old.sets:
            if name not in kept:
                self._put_set(name, None)
        for name in new.sets:
            self._put_set(name, AFFINITY_SET_SPEC)
        before, after = _claims(old), _claims(new)
        for k in before:
            if k not in after:
                self._claim(k, key, None)
        for k, claim in after.items():
            if before.get(k) != claim:
                self._claim(k, key, claim)
        kept, had = set(new.endpoint_self), set(old.endpoint_self)
        for k in old.endpoint_self:
            if k not in kept:
                self._self_refs[k] -= 1
                if not self._self_refs[k]:
                    del self._self_refs[k]
                    self._put_element(ENDPOINT_SELF, k, ABSENT)
        for k in new.endpoint_self:
            if k not in had:
                self._self_refs[k] = self._self_refs.get(k, 0) + 1
                if self._self_refs[k] == 1:
                    self._put_element(ENDPOINT_SELF, k, None)
        self.service_ports += new.service_ports - old.service_ports
        self.endpoints += new.endpoints - old.endpoints

    def set_node_ips(self, node_ips: Iterable[str]) -> None:
        """The node's addresses, for nodeport_addresses "primary"."""
        if NODEPORT_IPS not in self.elements:
            return
        wanted = nodeport_ips(self.options, node_ips)
        for k in [k for k in self.elements[NODEPORT_IPS] if k not in wanted]:
            self._put_element(NODEPORT_IPS, k, ABSENT)
        for k in wanted:
            self._put_element(NODEPORT_IPS, k, None)

    def _put_chain(self, name: str, rules: tuple[str, ...] | None) -> None:
        current = self.chains.get(name)
        if current == rules:
            return
        self._chains_before.setdefault(name, current)
        self._service_rules += len(rules or ()) - len(current or ())
        if rules is None:
            del self.chains[name]
        else:
            self.chains[name] = rules

    def _put_set(self, name: str, spec: str | None) -> None:
        current = self.sets.get(name)
        if current == spec:
            return
        self._sets_before.setdefault(name, current)
        if spec is None:
            del self.sets[name]
        else:
            self.sets[name] = spec

    def _put_element(self, map_name: str, k: str, value: Value) -> None:
        items = self.elements[map_name]
        current: Value = items.get(k, ABSENT)
        if current == value:
            return
        self._elements_before.setdefault((map_name, k), current)
        if isinstance(value, _Absent):
            del items[k]
        else:
            items[k] = value

    def _claim(self, k: str, service: str, claim: Claim | None) -> None:
        claims = self._waiting.pop(k, {})
        held = self._held.pop(k, None)
        if held is not None:
            claims[held[0]] = held[1]
        if claim is None:
            claims.pop(service, None)
        else:
            claims[service] = claim
        want = None
        if claims:
            first = min(claims)
            want = claims.pop(first)
            self._held[k] = (first, want)
            if claims:
                self._waiting[k] = claims
        have = held[1] if held is not None else None
        if want == have:
            return
        if have is not None:
            self._put_element(have[0], k, ABSENT)
        if want is not None:
            self._put_element(want[0], k, want[1])

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> str:
        """The commands turning the last committed table into this one; ""
        when nothing changed."""
        t = f"ip {self.table}"
        gone: dict[str, list[str]] = {}
        come: dict[str, dict[str, str | None]] = {}
        for (name, k), before in self._elements_before.items():
            after = self.elements[name].get(k, ABSENT)
            if before == after:
                continue
            if not isinstance(before, _Absent):
                gone.setdefault(name, []).append(k)
            if not isinstance(after, _Absent):
                come.setdefault(name, {})[k] = after
        created = [n for n, before in self._chains_before.items() if before is None and n in self.chains]
        changed = [n for n, before in self._chains_before.items()
                   if before is not None and n in self.chains and self.chains[n] != before]
        removed = [n for n, before in self._chains_before.items() if before is not None and n not in self.chains]
        out: list[str] = []
        # Elements first: a deleted element may be the last reference to a
        # chain deleted below, and a changed verdict is a delete then an add.
        for name, keys in gone.items():
            out += element_commands("delete", self.table, name, keys, False)
        out += [f"add set {t} {n} {self.sets[n]}" for n, before in self._sets_before.items()
                if before is None and n in self.sets]
        out += [f"add chain {t} {n}" for n in created]
        out += [f"flush chain {t} {n}" for n in changed]
        for n in created + changed:
            out += [f"add rule {t} {n} {r}" for r in self.chains[n]]
        for name, items in come.items():
            out += element_commands("add", self.table, name, items, True)
        # Chains jump to each other; emptying all of them first frees every
        # reference before any is deleted.
        out += [f"flush chain {t} {n}" for n in removed]
        out += [f"delete chain {t} {n}" for n in removed]
        out += [f"delete set {t} {n}" for n, before in self._sets_before.items()
                if before is not None and n not in self.sets]
        return "\n".join(out) + "\n" if out else ""

    def full_transaction(self) -> str:
        """The whole table, replacing whatever the kernel has (`add` first so
        that the `delete` succeeds when the table is missing)."""
        t = f"ip {self.table}"
        out = [f"add table {t}", f"delete table {t}", f"add table {t} {{ comment \"kubeling service proxy\"; }}"]
        out += self.base
        out += [f"add set {t} {name} {spec}" for name, spec in self.sets.items()]
        out += [f"add chain {t} {name}" for name in self.chains]
        for name, rules in self.chains.items():
            out += [f"add rule {t} {name} {r}" for r in rules]
        for name, items in self.elements.items():
            if items:
                out += element_commands("add", self.table, name, items, True)
        return "\n".join(out) + "\n"

    def commit(self) -> None:
        """The kernel now holds this table: start recording changes afresh."""
        self._chains_before.clear()
        self._sets_before.clear()
        self._elements_before.clear()


def _claims(fragment: Fragment) -> Mapping[str, Claim]:
    """The map keys a fragment claims; of two claims on one key its first counts."""
    out: dict[str, Claim] = {}
    for name, k, verdict in fragment.elements:
        out.setdefault(k, (name, verdict))
    return out


def render(services: Iterable[Obj], slices: Iterable[Obj], node_name: str, options: RenderOptions,
           node_ips: Iterable[str] = ()) -> DesiredTable:
    """The table for these objects, from scratch (nothing committed yet)."""
    by_service: dict[str, list[Obj]] = {}
    for s in slices:
        key = slice_service_key(s)
        if key:
            by_service.setdefault(key, []).append(s)
    table = DesiredTable(options, node_name)
    table.set_node_ips(node_ips)
    for svc in services:
        key = service_key(svc)
        table.update(key, svc, by_service.get(key, ()))
    return table
