"""Server reflection that shows the API's documentation.

grpcio-reflection answers from a DescriptorPool, whose descriptors carry no comments: the
generated modules leave them out. `documented_pool()` is a stand-in pool that answers with the
descriptors in ledger/v1/descriptor_set.binpb (written by scripts/generate_stubs.py together with
the stubs), comments included, so that `grpcurl describe` shows them. Use it as

    reflection.enable_server_reflection(service_names, server, pool=documented_pool())

Files not in the set (grpc.health.v1, the reflection service itself) are served as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet

# The method names below are those of google.protobuf's DescriptorPool and FileDescriptor, which
# grpcio-reflection calls; hence the CamelCase (N802).


class DocumentedFile:
    """A FileDescriptor whose proto form includes the source comments when they are known."""

    def __init__(
        self, descriptor: FileDescriptor, documented: Mapping[str, FileDescriptorProto]
    ) -> None:
        self._descriptor = descriptor
        self._documented = documented

    @property
    def name(self) -> str:
        return self._descriptor.name

    @property
    def dependencies(self) -> list[DocumentedFile]:
        return [DocumentedFile(file, self._documented) for file in self._descriptor.dependencies]

    def CopyToProto(self, proto: FileDescriptorProto) -> None:  # noqa: N802
        documented = self._documented.get(self.name)
        if documented is None:
            self._descriptor.CopyToProto(proto)
        else:
            proto.CopyFrom(documented)


class DocumentedPool:
    """The lookups grpcio-reflection makes on a DescriptorPool, answered with DocumentedFiles."""

    def __init__(
        self, pool: descriptor_pool.DescriptorPool, documented: Mapping[str, FileDescriptorProto]
    ) -> None:
        self._pool = pool
        self._documented = documented

    def FindFileByName(self, name: str) -> DocumentedFile:  # noqa: N802
        return DocumentedFile(self._pool.FindFileByName(name), self._documented)

    def FindFileContainingSymbol(self, symbol: str) -> DocumentedFile:  # noqa: N802
        return DocumentedFile(self._pool.FindFileContainingSymbol(symbol), self._documented)

    def FindMessageTypeByName(self, name: str) -> Descriptor:  # noqa: N802
        return self._pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Descriptor, number: int) -> FieldDescriptor:  # noqa: N802
        return self._pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Descriptor) -> list[FieldDescriptor]:  # noqa: N802
        return self._pool.FindAllExtensions(message)


def documented_descriptors() -> dict[str, FileDescriptorProto]:
    """The API's .proto files (and their imports) with comments, by file name."""
    data = files("ledger.v1").joinpath("descriptor_set.binpb").read_bytes()
    return {file.name: file for file in FileDescriptorSet.FromString(data).file}


def documented_pool(pool: descriptor_pool.DescriptorPool | None = None) -> DocumentedPool:
    """A pool for grpcio-reflection: `pool` (default: the default pool, where the generated
    modules register themselves) with the API's comments restored."""
    return DocumentedPool(pool or descriptor_pool.Default(), documented_descriptors())
