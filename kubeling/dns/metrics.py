"""Counters of the DNS server, exported in the Prometheus text format under
CoreDNS's metric names (so existing dashboards read them)."""

from __future__ import annotations

from bisect import bisect_left

import dns.rcode

#: CoreDNS's request duration buckets (seconds)
BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
           1.024, 2.048, 4.096, 8.192)


class Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    def __init__(self) -> None:
        self.requests = {"udp": 0, "tcp": 0}
        #: responses by rcode (the 4-bit header rcode; BADVERS counted apart)
        self.rcodes = [0] * 16
        self.badvers = 0
        #: queries that got no response: not DNS, a response, or a send failure
        self.dropped = 0
        #: answers served from a rendered template
        self.template_hits = 0
        self.forwarded = 0
        self.forward_failures = 0
        self.autopath = 0
        #: time from receipt to response, by where the answer came from:
        #: "local" (the cluster's records) or "forward" (needed an upstream)
        self.duration = {"local": Histogram(), "forward": Histogram()}

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("coredns_dns_requests_total", "counter", "Counter of DNS requests made per protocol.")
        for proto, n in self.requests.items():
            out.append(f'coredns_dns_requests_total{{proto="{proto}"}} {n}')
        family("coredns_dns_responses_total", "counter", "Counter of response status codes.")
        for code, n in enumerate(self.rcodes):
            if n:
                rcode = dns.rcode.to_text(code)  # type: ignore[arg-type]
                out.append(f'coredns_dns_responses_total{{rcode="{rcode}"}} {n}')
        if self.badvers:
            out.append(f'coredns_dns_responses_total{{rcode="BADVERS"}} {self.badvers}')
        family("kubeling_dns_dropped_total", "counter", "Queries that got no response.")
        out.append(f"kubeling_dns_dropped_total {self.dropped}")
        family("kubeling_dns_template_hits_total", "counter", "Answers served from a pre-rendered answer.")
        out.append(f"kubeling_dns_template_hits_total {self.template_hits}")
        family("coredns_forward_requests_total", "counter", "Counter of requests made to upstreams.")
        out.append(f"coredns_forward_requests_total {self.forwarded}")
        family("kubeling_dns_forward_failures_total", "counter", "Forwarded queries no upstream answered.")
        out.append(f"kubeling_dns_forward_failures_total {self.forward_failures}")
        family("coredns_autopath_success_total", "counter", "Counter of requests that did autopath.")
        out.append(f"coredns_autopath_success_total {self.autopath}")
        family("coredns_dns_request_duration_seconds", "histogram",
               "Histogram of the time (in seconds) each request took.")
        for source, h in self.duration.items():
            cumulative = 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), h.counts):
                cumulative += n
                out.append(f'coredns_dns_request_duration_seconds_bucket{{source="{source}",le="{bound}"}} '
                           f"{cumulative}")
            out.append(f'coredns_dns_request_duration_seconds_sum{{source="{source}"}} {h.total}')
            out.append(f'coredns_dns_request_duration_seconds_count{{source="{source}"}} {h.count}')
        return "\n".join(out) + "\n"
