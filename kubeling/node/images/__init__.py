"""Images on a node: references, registry pulls, archive loads, the content store
and unpacked layers for overlayfs. `ImageService` is the entry point."""

from .distribution import RegistryConfig
from .reference import InvalidReference, Reference, parse
from .service import (ErrImageNeverPull, ErrImagePull, Image, ImageError, ImageEvent, ImageService,
                      InvalidImageName, PullPolicy)

__all__ = ["ErrImageNeverPull", "ErrImagePull", "Image", "ImageError", "ImageEvent", "ImageService",
           "InvalidImageName", "InvalidReference", "PullPolicy", "Reference", "RegistryConfig", "parse"]
