"""Image reference parsing and normalisation, checked against the behaviour and
error messages of distribution/reference (ParseDockerRef) and go-digest."""

from __future__ import annotations

import pytest

from kubeling.node.images.reference import InvalidReference, Reference, parse, validate_digest

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("given,normalised", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("ethos93/go-httpd:v1", "docker.io/ethos93/go-httpd:v1"),
    ("radial/busyboxplus:curl", "docker.io/radial/busyboxplus:curl"),
    ("docker.io/x", "docker.io/library/x:latest"),
    ("localhost/foo", "localhost/foo:latest"),
    ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag"),
    ("host:5000/a/b:tag", "host:5000/a/b:tag"),
    ("127.0.0.1:5000/ethos93/go-httpd:v1", "127.0.0.1:5000/ethos93/go-httpd:v1"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("[::1]:5000/a:b", "[::1]:5000/a:b"),
    ("a/b/c/d", "docker.io/a/b/c/d:latest"),
    ("foo_bar.baz-qux__x", "docker.io/library/foo_bar.baz-qux__x:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    # a reference with tag and digest keeps only the digest (containerd's ParseDockerRef)
    (f"busybox:1.36@{D}", f"docker.io/library/busybox@{D}"),
    (f"host:5000/a@{D}", f"host:5000/a@{D}"),
    ("Foo/bar", "Foo/bar:latest"),  # an uppercase first element is taken for a domain
])
def test_normalisation(given: str, normalised: str) -> None:
    assert str(parse(given)) == normalised


def test_parts() -> None:
    r = parse("docker.io/x")
    assert (r.domain, r.path, r.tag, r.digest) == ("docker.io", "library/x", "latest", None)
    assert r.host == "registry-1.docker.io"
    assert r.name == "docker.io/library/x"
    assert r.object == "latest"
    r = parse("host:5000/a/b:tag")
    assert (r.domain, r.path, r.host, r.object) == ("host:5000", "a/b", "host:5000", "tag")
    r = parse(f"localhost/x@{D}")
    assert (r.domain, r.path, r.tag, r.digest, r.object) == ("localhost", "x", None, D, D)
    assert parse(f"busybox@{D}") == Reference("docker.io", "library/busybox", None, D)


@pytest.mark.parametrize("given,message", [
    ("", "invalid reference format"),  # splitDockerDomain makes it docker.io/library/
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("docker.io/Ethos93/go-httpd", "invalid reference format: repository name (Ethos93/go-httpd) must be lowercase"),
    ("host:5000/Upper", "invalid reference format: repository name (Upper) must be lowercase"),
    ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
    ("busybox:", "invalid reference format"),
    ("busybox:-bad", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("-a", "invalid reference format"),
    ("a-", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("http://host/x", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),  # fewer than 32 hex digits
    ("busybox@sha256:" + "a" * 32, "invalid checksum digest format"),
    ("busybox@sha256:" + "A" * 64, "invalid checksum digest format"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("x/" + "a" * 255, "repository name must not be more than 255 characters"),
])
def test_errors(given: str, message: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse(given)
    assert str(e.value) == message


def test_digests() -> None:
    assert validate_digest(D) == D
    assert validate_digest("sha512:" + "0" * 128)
    for bad, message in [("sha256", "invalid checksum digest format"), (":x", "invalid checksum digest format"),
                         ("sha256:" + "a" * 63, "invalid checksum digest format"),
                         ("Sha256:" + "a" * 64, "invalid checksum digest format"),
                         ("foo:bar", "unsupported digest algorithm")]:
        with pytest.raises(InvalidReference, match=message):
            validate_digest(bad)
