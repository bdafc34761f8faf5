"""`kubeling image`: the node's image store from the command line, as crictl
shows it (`ls`, `rm`, `pull`) plus `load` of docker-archive and oci-archive
tarballs, for nodes that cannot reach a registry."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .common import DEFAULT_DATA_DIR, CLIError

if TYPE_CHECKING:
    from ..node.images import ImageService
    from ..node.images.distribution import RegistryConfig

T = TypeVar("T")

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3), as crictl prints SIZE."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_UNITS[i]}"


def tabulate(rows: Sequence[Sequence[str]]) -> str:
    """Go's tabwriter with minwidth 20, padding 3, as crictl configures it."""
    widths = [max(20, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1] + "\n" for r in rows)


def add_registry_arguments(p: argparse.ArgumentParser) -> None:
    """The registry flags every command that pulls accepts."""
    p.add_argument("--registry-config", metavar="FILE",
                   help="mirrors and credentials in k3s registries.yaml form (default: DATA_DIR/registries.yaml)")
    p.add_argument("--registry-mirror", action="append", default=[], metavar="REGISTRY=URL",
                   help="pull REGISTRY's images from URL first (repeatable, tried in order), "
                        "e.g. docker.io=http://127.0.0.1:5000")
    p.add_argument("--offline", action="store_true",
                   help="never contact a registry itself, only its configured mirrors")


def registry_config(args: argparse.Namespace) -> RegistryConfig:
    """The registry configuration the flags of add_registry_arguments() describe."""
    from ..node.images.distribution import load_registry_config

    explicit = args.registry_config is not None
    path = Path(args.registry_config) if explicit else Path(args.data_dir) / "registries.yaml"
    try:
        return load_registry_config(path, args.registry_mirror, args.offline, must_exist=explicit)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _run(args: argparse.Namespace, work: Callable[[ImageService], Awaitable[T]]) -> T:
    from ..node.images import ImageError, ImageService

    async def main() -> T:
        cfg = registry_config(args) if hasattr(args, "registry_mirror") else None
        service = ImageService(Path(args.data_dir), cfg)
        try:
            return await work(service)
        finally:
            await service.close()

    try:
        return asyncio.run(main())
    except ImageError as e:
        raise CLIError(e.message) from None
    except PermissionError as e:
        raise CLIError(f"{e.filename}: permission denied") from None


def _ls(args: argparse.Namespace) -> None:
    rows = _run(args, lambda s: s.list())
    table = [["IMAGE", "TAG", "IMAGE ID", "SIZE"]]
    table += [[r.repository, r.tag, r.id.removeprefix("sha256:")[:13], human_size(r.size)] for r in rows]
    print(tabulate(table), end="")


def _rm(args: argparse.Namespace) -> None:
    async def work(service: ImageService) -> list[str]:
        removed: list[str] = []
        for ref in args.images:
            removed += await service.remove(ref)
        return removed

    for name in _run(args, work):
        print(f"Deleted: {name}")


def _load(args: argparse.Namespace) -> None:
    for image in _run(args, lambda s: s.load(Path(args.file))):
        print(f"Loaded image: {image.name}")


def _pull(args: argparse.Namespace) -> None:
    image = _run(args, lambda s: s.pull(args.image))
    print(f"Image is up to date for {image.id}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `kubeling image …` on the top-level subcommands."""
    img = sub.add_parser("image", help="list, pull, load and remove the node's images")
    isub = img.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    def command(name: str, help: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        p = isub.add_parser(name, help=help)
        p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR / "node"), help="the node's data directory")
        p.set_defaults(func=func)
        return p

    command("ls", "list images as crictl images does", _ls)
    p = command("rm", "remove images by name or ID, and content no image uses any more", _rm)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p = command("load", "load images from a docker save or OCI archive tarball", _load)
    p.add_argument("file", metavar="FILE")
    p = command("pull", "pull an image from its registry or mirrors", _pull)
    p.add_argument("image", metavar="IMAGE")
    add_registry_arguments(p)
