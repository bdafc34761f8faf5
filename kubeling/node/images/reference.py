"""Image references, parsed and normalised as Docker and containerd do.

`busybox` means `docker.io/library/busybox:latest`; `docker.io` is the name the
user sees, `registry-1.docker.io` the host actually contacted. A reference with
both a tag and a digest keeps only the digest (containerd's ParseDockerRef), and
errors carry the wording of the upstream reference library, which kubelet shows
in InvalidImageName messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})$", re.ASCII)
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_GO_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """A string that is not a valid image reference; the message is upstream's."""


def validate_digest(digest: str) -> str:
    """Check `algorithm:hex` as go-digest does and return it."""
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        raise InvalidReference("invalid checksum digest format")
    length = _HEX_LENGTHS.get(algorithm)
    if length is None:
        if not _GO_DIGEST_RE.match(digest):
            raise InvalidReference("invalid checksum digest format")
        raise InvalidReference("unsupported digest algorithm")
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReference("invalid checksum digest format")
    return digest


def is_identifier(s: str) -> bool:
    """A bare 64-hex image ID, which is never a repository name."""
    return bool(_IDENTIFIER_RE.match(s))


@dataclass(frozen=True)
class Reference:
    """A normalised reference: always a domain and path, and a tag or a digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository, as `crictl images` prints it: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def host(self) -> str:
        """The registry host the upstream endpoint lives on."""
        return DOCKER_HUB_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"



def _split_docker_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost":
        domain, remote = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _parse(s: str) -> tuple[str, str, str | None, str | None]:
    """distribution/reference Parse: (domain, path, tag, digest) without normalising."""
    if not s:
        raise InvalidReference("repository name must have at least one component")
    m = _REFERENCE_RE.match(s)
    if m is None:
        lower = s.lower()
        if lower != s and _REFERENCE_RE.match(lower):
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _ANCHORED_NAME_RE.match(name)
    domain, path = (nm.group(1) or "", nm.group(2)) if nm else ("", name)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        validate_digest(digest)
    return domain, path, tag, digest


def parse(s: str) -> Reference:
    """Normalise a user-supplied image name (ParseDockerRef): default domain,
    `library/` for official images, `latest` when neither tag nor digest is given,
    and only the digest when both are."""
    if is_identifier(s):
        raise InvalidReference(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(f"invalid reference format: repository name ({remote}) must be lowercase")
    domain, path, tag, digest = _parse(f"{domain}/{remainder}")
    if digest:
        return Reference(domain, path, None, digest)
    return Reference(domain, path, tag or DEFAULT_TAG, None)

