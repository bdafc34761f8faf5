"""The node's image service: what the kubelet's image manager and the CRI image
service of containerd do together.

`ensure()` applies imagePullPolicy (Always resolves the manifest every time and
downloads only when the digest changed; IfNotPresent pulls only a missing
image; Never fails with ErrImageNeverPull) and reports the kubelet's events
(`Pulling image "x"`, `Successfully pulled image "x" in 1.2s (1.2s including
waiting). Image size: N bytes.`, `Container image "x" already present on
machine`). It returns the image's runtime config and its unpacked layers,
lowest first, for an overlayfs mount. Concurrent pulls of one reference with the
same credentials share a single pull; blobs and layers shared between images
are fetched and unpacked once.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from . import oci
from .archive import ArchiveError, LoadedImage, load_archive
from .distribution import (Credentials, DistributionError, Endpoint, RegistryClient, RegistryConfig, endpoints,
                           pull_secret_credentials)
from .reference import InvalidReference, Reference, parse
from .store import (ImageRecord, ImageStore, LayerRecord, ListedImage, NameRecord, StoreError, digest_name,
                    tag_name)
from .unpack import UnpackError

log = logging.getLogger(__name__)

#: parallel layer downloads per pull (containerd's max_concurrent_downloads default)
MAX_CONCURRENT_DOWNLOADS = 3


class PullPolicy(str, enum.Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class ImageError(Exception):
    """A failure with the reason kubelet puts in the container's waiting state."""

    reason = "ErrImagePull"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ErrImagePull(ImageError):
    reason = "ErrImagePull"


class ErrImageNeverPull(ImageError):
    reason = "ErrImageNeverPull"


class InvalidImageName(ImageError):
    reason = "InvalidImageName"


@dataclass(frozen=True)
class ImageEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Image:
    name: str
    id: str
    repo_digest: str
    config: oci.ImageConfig
    #: unpacked layers, lowest first: overlayfs wants them reversed in lowerdir=
    layers: list[Path]
    size: int


@dataclass(frozen=True)
class _PullResult:
    image: Image
    duration: float


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() after Truncate(time.Millisecond), as kubelet prints it."""
    ms = int(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, frac = divmod(rest, 1000)
    sec = f"{s}.{frac:03d}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


EventSink = Callable[[ImageEvent], None]


class _KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class ImageService:
    def __init__(self, data_dir: Path, registry_config: RegistryConfig | None = None,
                 platform: oci.Platform | None = None) -> None:
        self.store = ImageStore(Path(data_dir) / "images")
        self.registry_config = registry_config or RegistryConfig()
        self.platform = platform or oci.Platform.host()
        self._session: aiohttp.ClientSession | None = None
        self._client: RegistryClient | None = None
        self._inflight: dict[tuple[str, tuple[Credentials, ...]], asyncio.Future[_PullResult]] = {}
        #: per blob digest and per diffID, so shared content is fetched and unpacked once
        self._locks = _KeyedLocks()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = None

    def _registry(self) -> RegistryClient:
        if self._client is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=60),
                headers={"User-Agent": "kubeling"})
            self._client = RegistryClient(self._session)
        return self._client

    # queries

    async def status(self, image: str) -> Image | None:
        """The stored image `image` names, or None (CRI ImageStatus)."""
        ref = _parse(image)
        return await asyncio.to_thread(self._lookup, ref)

    def _lookup(self, ref: Reference) -> Image | None:
        found = self.store.lookup(str(ref))
        if found is None:
            return None
        rec, img = found
        if self.store.missing_content([rec], img):
            return None
        return self._image(str(ref), rec, img)

    def _image(self, name: str, rec: NameRecord, img: ImageRecord) -> Image:
        config = oci.ImageConfig.parse(self.store.read_blob(img.id))
        return Image(name=name, id=img.id, repo_digest=digest_name(parse(name), rec.target), config=config,
                     layers=[self.store.layer_path(x.diff_id) for x in img.layers], size=img.size)

    async def list(self) -> builtins.list[ListedImage]:
        return await asyncio.to_thread(self.store.list)

    async def remove(self, ref: str) -> builtins.list[str]:
        """Remove a name (normalised), or every name of an image ID; returns the names removed."""
        def run() -> builtins.list[str]:
            names = self.store.resolve(ref)
            if not names:
                try:
                    names = self.store.resolve(str(parse(ref)))
                except InvalidReference:
                    names = []
            if not names:
                raise ImageError(f"no such image: {ref}")
            return self.store.remove(names)
        return await asyncio.to_thread(run)

    async def load(self, file: Path) -> builtins.list[LoadedImage]:
        try:
            return await asyncio.to_thread(load_archive, self.store, Path(file), self.platform)
        except ArchiveError as e:
            raise ImageError(str(e)) from None

    # pulls

    async def ensure(self, image: str, policy: PullPolicy | str = PullPolicy.IF_NOT_PRESENT,
                     pull_secrets: Iterable[Mapping[str, Any]] = (), on_event: EventSink | None = None) -> Image:
        """Make `image` present according to `policy`, reporting kubelet's events."""
        def emit(type_: str, reason: str, message: str) -> None:
            if on_event is not None:
                on_event(ImageEvent(type_, reason, message))

        policy = PullPolicy(policy)
        try:
            ref = _parse(image)
        except InvalidImageName as e:
            emit("Warning", "InspectFailed", e.message)
            raise
        if policy is not PullPolicy.ALWAYS:
            present = await asyncio.to_thread(self._lookup, ref)
            if present is not None:
                emit("Normal", "Pulled", f'Container image "{image}" already present on machine')
                return present
            if policy is PullPolicy.NEVER:
                message = f'Container image "{image}" is not present with pull policy of Never'
                emit("Warning", "ErrImageNeverPull", message)
                raise ErrImageNeverPull(message)
        emit("Normal", "Pulling", f'Pulling image "{image}"')
        start = time.monotonic()
        try:
            result = await self._pull_shared(ref, list(pull_secrets))
        except ErrImagePull as e:
            emit("Warning", "Failed", f'Failed to pull image "{image}": {e.message}')
            raise
        waited = time.monotonic() - start
        emit("Normal", "Pulled", f'Successfully pulled image "{image}" in {go_duration(result.duration)} '
                                 f"({go_duration(waited)} including waiting). Image size: {result.image.size} bytes.")
        return result.image

    async def pull(self, image: str, pull_secrets: Iterable[Mapping[str, Any]] = ()) -> Image:
        """Resolve and fetch `image` (CRI PullImage)."""
        return (await self._pull_shared(_parse(image), list(pull_secrets))).image

    async def _pull_shared(self, ref: Reference, secrets: builtins.list[Mapping[str, Any]]) -> _PullResult:
        creds = tuple(pull_secret_credentials(secrets, ref))
        key = (str(ref), creds)
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._pull_with_credentials(ref, creds))
            self._inflight[key] = fut

            def done(f: asyncio.Future[_PullResult]) -> None:
                self._inflight.pop(key, None)
                if not f.cancelled():
                    f.exception()  # retrieved here too, in case every waiter was cancelled

            fut.add_done_callback(done)
        return await asyncio.shield(fut)

    async def _pull_with_credentials(self, ref: Reference, creds: tuple[Credentials, ...]) -> _PullResult:
        """Try each matching pull-secret credential in turn, as kubelet does, or
        none; several failures are reported together."""
        errors: builtins.list[str] = []
        for c in creds or (None,):
            start = time.monotonic()
            try:
                image = await self._pull(ref, endpoints(self.registry_config, ref, c))
                return _PullResult(image, time.monotonic() - start)
            except ErrImagePull as e:
                errors.append(e.message)
        raise ErrImagePull(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")

    async def _pull(self, ref: Reference, eps: builtins.list[Endpoint]) -> Image:
        prefix = f'failed to pull and unpack image "{ref}"'
        if not eps:
            raise ErrImagePull(f'{prefix}: failed to resolve reference "{ref}": no registry endpoints for '
                               f"{ref.domain}: the registry configuration is offline and has no mirror for it")
        client = self._registry()
        try:
            ep, desc = await client.resolve(eps, ref)
        except DistributionError as e:
            raise ErrImagePull(f'{prefix}: failed to resolve reference "{ref}": {e}') from None
        current = await asyncio.to_thread(self._unchanged, ref, desc.digest)
        if current is not None:
            return current
        # the endpoint that resolved the reference serves its content first
        eps = [ep] + [e for e in eps if e != ep]
        last: Exception | None = None
        for _ in range(3):
            try:
                return await self._fetch_image(client, eps, ref, desc)
            except StoreError as e:
                # another process collected content of this pull before it was committed
                log.info("retrying the pull of %s: %s", ref, e)
                last = e
            except (DistributionError, oci.FormatError, UnpackError, OSError) as e:
                raise ErrImagePull(f"{prefix}: {e}") from None
        raise ErrImagePull(f"{prefix}: {last}")

    def _unchanged(self, ref: Reference, target: str) -> Image | None:
        """The stored image when `ref` still resolves to what was pulled before."""
        name = tag_name(ref) or digest_name(ref, target)
        found = self.store.lookup(name)
        if found is None or found[0].target != target or self.store.missing_content([found[0]], found[1]):
            return None
        return self._image(str(ref), *found)

    async def _fetch_blob(self, client: RegistryClient, eps: builtins.list[Endpoint], ref: Reference,
                          desc: oci.Descriptor, kind: str) -> None:
        async with self._locks.hold(desc.digest):
            if await asyncio.to_thread(self.store.has_blob, desc.digest):
                return
            tmp = self.store.temp_path(self.store.blobs)
            f = await asyncio.to_thread(open, tmp, "wb")
            try:
                await client.fetch(eps, ref, desc, kind, f)
                await asyncio.to_thread(f.close)
                await asyncio.to_thread(self.store.commit_blob, tmp, desc.digest)
            finally:
                await asyncio.to_thread(f.close)
                await asyncio.to_thread(tmp.unlink, True)

    async def _fetch_image(self, client: RegistryClient, eps: builtins.list[Endpoint], ref: Reference,
                           target: oci.Descriptor) -> Image:
        with self.store.lease() as held:
            held.add(target.digest)
            await self._fetch_blob(client, eps, ref, target, "manifests")
            data = await asyncio.to_thread(self.store.read_blob, target.digest)
            media_type = oci.media_type_of(data, target.media_type)
            manifest_desc = target
            if media_type in oci.INDEX_TYPES:
                manifest_desc = oci.select_platform(oci.index_manifests(data), self.platform)
                held.add(manifest_desc.digest)
                await self._fetch_blob(client, eps, ref, manifest_desc, "manifests")
                data = await asyncio.to_thread(self.store.read_blob, manifest_desc.digest)
                media_type = oci.media_type_of(data, manifest_desc.media_type)
            oci.check_supported(media_type)
            if media_type in oci.INDEX_TYPES:
                raise oci.FormatError("nested indexes are not supported")
            manifest = oci.Manifest.parse(data)
            held.add(manifest.config.digest)
            await self._fetch_blob(client, eps, ref, manifest.config, "blobs")
            config = oci.ImageConfig.parse(await asyncio.to_thread(self.store.read_blob, manifest.config.digest))
            if len(config.diff_ids) != len(manifest.layers):
                raise oci.FormatError(f"manifest has {len(manifest.layers)} layers but the config "
                                      f"{len(config.diff_ids)} diff_ids")
            held.update(config.diff_ids)
            held.update(x.digest for x in manifest.layers)
            sem = asyncio.Semaphore(MAX_CONCURRENT_DOWNLOADS)

            async def layer(d: oci.Descriptor, diff_id: str) -> None:
                if await asyncio.to_thread(self.store.has_layer, diff_id):
                    return
                async with sem:
                    await self._fetch_blob(client, eps, ref, d, "blobs")
                async with self._locks.hold(diff_id):
                    await asyncio.to_thread(self.store.unpack, d.digest, diff_id)

            await asyncio.gather(*(layer(d, i) for d, i in zip(manifest.layers, config.diff_ids)))
            record = ImageRecord(manifest.config.digest,
                                 [LayerRecord(d.digest, i, d.media_type, d.size)
                                  for d, i in zip(manifest.layers, config.diff_ids)],
                                 len(data) + manifest.config.size + sum(d.size for d in manifest.layers),
                                 config.created)
            rec = NameRecord(record.id, target.digest, manifest_desc.digest)
            names = {digest_name(ref, target.digest): rec}
            tag = tag_name(ref)
            if tag:
                names[tag] = rec
            await asyncio.to_thread(self.store.commit, names, record)
        return Image(name=str(ref), id=record.id, repo_digest=digest_name(ref, target.digest), config=config,
                     layers=[self.store.layer_path(i) for i in config.diff_ids], size=record.size)


def _parse(image: str) -> Reference:
    try:
        return parse(image)
    except InvalidReference as e:
        raise InvalidImageName(f'Failed to apply default image tag "{image}": couldn\'t parse image name '
                               f'"{image}": {e}') from None
