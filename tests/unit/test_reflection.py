"""Reflection serves the API with its documentation, and every element of the API has some."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto
from grpc_reflection.v1alpha import reflection, reflection_pb2

from ledger.reflection import documented_descriptors, documented_pool
from ledger.v1 import commands_pb2, queries_pb2

API_FILES = [commands_pb2.DESCRIPTOR.name, queries_pb2.DESCRIPTOR.name]

# Field numbers in descriptor.proto, as used by SourceCodeInfo paths.
MESSAGE_TYPE, ENUM_TYPE, SERVICE = 4, 5, 6
MESSAGE_FIELD, ENUM_VALUE, SERVICE_METHOD = 2, 2, 2


def reflect(symbol: str) -> list[FileDescriptorProto]:
    servicer = reflection.ReflectionServicer(["ledger.v1.QueryService"], pool=documented_pool())
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    [response] = servicer.ServerReflectionInfo(iter([request]), None)
    return [
        FileDescriptorProto.FromString(data)
        for data in response.file_descriptor_response.file_descriptor_proto
    ]


def comment_of(file: FileDescriptorProto, path: tuple[int, ...]) -> str:
    for location in file.source_code_info.location:
        if tuple(location.path) == path:
            return location.leading_comments.strip()
    return ""


def test_reflection_serves_the_api_with_its_comments() -> None:
    files = {file.name: file for file in reflect("ledger.v1.QueryService")}
    assert set(files) == {"ledger/v1/queries.proto", "google/protobuf/timestamp.proto"}
    queries = files["ledger/v1/queries.proto"]
    service_index = [service.name for service in queries.service].index("QueryService")
    assert comment_of(queries, (SERVICE, service_index)).startswith("Answers questions")


def test_files_outside_the_api_are_served_as_usual() -> None:
    [file] = reflect("grpc.reflection.v1alpha.ServerReflection")
    assert file.name.endswith("reflection.proto")
    assert not file.HasField("source_code_info")


def _without_derived_fields(file: FileDescriptorProto) -> FileDescriptorProto:
    """The file as the generated module registers it: no comments, no computed json names."""
    copy = FileDescriptorProto()
    copy.CopyFrom(file)
    copy.ClearField("source_code_info")
    for message in _messages(copy.message_type):
        for field in message.field:
            field.ClearField("json_name")
    return copy


def _messages(messages: Iterable[DescriptorProto]) -> Iterator[DescriptorProto]:
    for message in messages:
        yield message
        yield from _messages(message.nested_type)


@pytest.mark.parametrize("name", API_FILES)
def test_the_descriptor_set_matches_the_generated_modules(name: str) -> None:
    registered = FileDescriptorProto()
    descriptor_pool.Default().FindFileByName(name).CopyToProto(registered)
    assert _without_derived_fields(documented_descriptors()[name]) == registered


def _undocumented(file: FileDescriptorProto) -> Iterator[str]:
    def check(path: tuple[int, ...], what: str) -> Iterator[str]:
        if not comment_of(file, path):
            yield what

    for i, message in enumerate(file.message_type):
        yield from check((MESSAGE_TYPE, i), message.name)
        for j, field in enumerate(message.field):
            yield from check((MESSAGE_TYPE, i, MESSAGE_FIELD, j), f"{message.name}.{field.name}")
    for i, enum in enumerate(file.enum_type):
        yield from check((ENUM_TYPE, i), enum.name)
        for j, value in enumerate(enum.value):
            yield from check((ENUM_TYPE, i, ENUM_VALUE, j), value.name)
    for i, service in enumerate(file.service):
        yield from check((SERVICE, i), service.name)
        for j, method in enumerate(service.method):
            yield from check((SERVICE, i, SERVICE_METHOD, j), f"{service.name}.{method.name}")


@pytest.mark.parametrize("name", API_FILES)
def test_every_element_of_the_api_is_documented(name: str) -> None:
    assert list(_undocumented(documented_descriptors()[name])) == []
