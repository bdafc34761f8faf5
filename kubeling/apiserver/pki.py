"""The cluster CA, the API server's serving certificate, bearer tokens and the
admin kubeconfig, all generated on first start and kept in the data dir."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import ipaddress
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLUSTER_NAME = "kubeling"
_SIOCGIFADDR = 0x8915
ADMIN_USER = "kubeling-admin"


@dataclass(frozen=True)
class PKI:
    dir: Path

    @classmethod
    def of(cls, data_dir: Path) -> PKI:
        """The PKI of an API server's data dir."""
        return cls(data_dir / "pki")

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def tokens(self) -> Path:
        return self.dir / "tokens.csv"

    @property
    def service_account_key(self) -> Path:
        return self.dir / "sa.key"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def host_addresses() -> list[str]:
    """Addresses of this host's interfaces (IPv4, via SIOCGIFADDR) and of its
    name, for the serving certificate's SANs and the advertised address."""
    out = {"127.0.0.1", "::1"}
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # no IPv4 address on this interface
            out.add(socket.inet_ntoa(packed[20:24]))
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            out.add(str(info[4][0]))
    except OSError:
        pass
    return sorted(out, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))


def _ensure_ca(pki: PKI) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if pki.ca_cert.exists() and pki.ca_key.exists():
        cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeling-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pki.ca_key, _key_pem(key))
    _write_private(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def ensure_service_account_key(pki: PKI) -> ec.EllipticCurvePrivateKey:
    """The key service account tokens are signed with, made on first start."""
    if pki.service_account_key.exists():
        key = serialization.load_pem_private_key(pki.service_account_key.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{pki.service_account_key}: not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(pki.service_account_key, _key_pem(key))
    return key


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def ensure_pki(data_dir: Path, extra_sans: list[str] | None = None) -> PKI:
    """Create (or reuse) the CA and a serving certificate covering
    127.0.0.1, localhost, this host's addresses and `extra_sans`."""
    pki = PKI.of(data_dir)
    pki.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = _ensure_ca(pki)
    ips = set(host_addresses()) | {s for s in (extra_sans or []) if _is_ip(s)}
    dns = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local", socket.gethostname()}
    dns |= {s for s in (extra_sans or []) if not _is_ip(s)}
    wanted = {str(ipaddress.ip_address(i)) for i in ips} | dns
    if pki.serving_cert.exists() and pki.serving_key.exists():
        cert = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
        if wanted <= _sans_of(cert) and isinstance(cert.public_key(), rsa.RSAPublicKey) and \
                cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30):
            return pki
    # RSA, as kubeadm makes it: the small TLS stacks of in-cluster clients
    # (busybox wget) know no ECDSA suites
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName(d) for d in sorted(dns)] + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki.serving_key, _key_pem(key))
    _write_private(pki.serving_cert, cert.public_bytes(serialization.Encoding.PEM))
    return pki


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class TokenUser:
    name: str
    uid: str
    groups: tuple[str, ...]


def load_tokens(pki: PKI) -> dict[str, TokenUser]:
    """Static token file in kube-apiserver's --token-auth-file format:
    token,user,uid,"group1,group2"."""
    out: dict[str, TokenUser] = {}
    if not pki.tokens.exists():
        return out
    for line in pki.tokens.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(",", 3)
        groups = tuple(g for g in parts[3].strip('"').split(",") if g) if len(parts) > 3 else ()
        out[parts[0]] = TokenUser(parts[1], parts[2] if len(parts) > 2 else parts[1], groups)
    return out


def ensure_token(pki: PKI, user: str, groups: tuple[str, ...] = ("system:masters",)) -> str:
    """The bearer token for `user`, created on first use."""
    for token, u in load_tokens(pki).items():
        if u.name == user:
            return token
    token = secrets.token_urlsafe(32)
    line = f'{token},{user},{user},"{",".join(groups)}"\n'
    existing = pki.tokens.read_text() if pki.tokens.exists() else ""
    _write_private(pki.tokens, (existing + line).encode())
    return token


def kubeconfig(server: str, ca_pem: bytes, token: str, cluster: str = CLUSTER_NAME,
               user: str = ADMIN_USER) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }


def write_admin_kubeconfig(data_dir: Path, pki: PKI, server: str) -> Path:
    token = ensure_token(pki, ADMIN_USER)
    cfg = kubeconfig(server, pki.ca_cert.read_bytes(), token)
    path = data_dir / "kubeconfig.yaml"
    _write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode())
    return path
