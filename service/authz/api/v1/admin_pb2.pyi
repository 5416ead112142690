import datetime

from authz.api.v1 import authz_pb2 as _authz_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FindingSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINDING_SEVERITY_UNSPECIFIED: _ClassVar[FindingSeverity]
    FINDING_SEVERITY_ERROR: _ClassVar[FindingSeverity]
    FINDING_SEVERITY_WARNING: _ClassVar[FindingSeverity]
FINDING_SEVERITY_UNSPECIFIED: FindingSeverity
FINDING_SEVERITY_ERROR: FindingSeverity
FINDING_SEVERITY_WARNING: FindingSeverity

class PolicyRule(_message.Message):
    __slots__ = ("ptype", "values")
    PTYPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ptype: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ptype: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyLine(_message.Message):
    __slots__ = ("file", "line", "ptype", "values", "location")
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    PTYPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    file: str
    line: int
    ptype: str
    values: _containers.RepeatedScalarFieldContainer[str]
    location: str
    def __init__(self, file: _Optional[str] = ..., line: _Optional[int] = ..., ptype: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., location: _Optional[str] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("severity", "file", "line", "message")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    severity: FindingSeverity
    file: str
    line: int
    message: str
    def __init__(self, severity: _Optional[_Union[FindingSeverity, str]] = ..., file: _Optional[str] = ..., line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ReloadError(_message.Message):
    __slots__ = ("at", "message", "findings")
    AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    message: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("token", "page_size", "page_token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    page_size: int
    page_token: str
    def __init__(self, token: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("version", "model", "lines", "last_reload_error", "source", "next_page_token")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    version: str
    model: str
    lines: _containers.RepeatedCompositeFieldContainer[PolicyLine]
    last_reload_error: ReloadError
    source: PolicySourceState
    next_page_token: str
    def __init__(self, version: _Optional[str] = ..., model: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[PolicyLine, _Mapping]]] = ..., last_reload_error: _Optional[_Union[ReloadError, _Mapping]] = ..., source: _Optional[_Union[PolicySourceState, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PolicySourceState(_message.Message):
    __slots__ = ("kind", "location", "reachable", "error", "since", "head_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    location: str
    reachable: bool
    error: str
    since: _timestamp_pb2.Timestamp
    head_version: str
    def __init__(self, kind: _Optional[str] = ..., location: _Optional[str] = ..., reachable: _Optional[bool] = ..., error: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., head_version: _Optional[str] = ...) -> None: ...

class ValidatePolicyRequest(_message.Message):
    __slots__ = ("token", "model", "files", "run_tests")
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    RUN_TESTS_FIELD_NUMBER: _ClassVar[int]
    token: str
    model: str
    files: _containers.ScalarMap[str, str]
    run_tests: bool
    def __init__(self, token: _Optional[str] = ..., model: _Optional[str] = ..., files: _Optional[_Mapping[str, str]] = ..., run_tests: _Optional[bool] = ...) -> None: ...

class ValidatePolicyResponse(_message.Message):
    __slots__ = ("ok", "version", "findings")
    OK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    version: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, ok: _Optional[bool] = ..., version: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class AddRulesRequest(_message.Message):
    __slots__ = ("token", "rules", "file", "expected_version", "message")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: str
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    file: str
    expected_version: str
    message: str
    def __init__(self, token: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ..., file: _Optional[str] = ..., expected_version: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AddRulesResponse(_message.Message):
    __slots__ = ("version", "reload_error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    version: str
    reload_error: ReloadError
    def __init__(self, version: _Optional[str] = ..., reload_error: _Optional[_Union[ReloadError, _Mapping]] = ...) -> None: ...

class RemoveRulesRequest(_message.Message):
    __slots__ = ("token", "rules", "file", "expected_version", "message")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: str
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    file: str
    expected_version: str
    message: str
    def __init__(self, token: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ..., file: _Optional[str] = ..., expected_version: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RemoveRulesResponse(_message.Message):
    __slots__ = ("version", "reload_error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    version: str
    reload_error: ReloadError
    def __init__(self, version: _Optional[str] = ..., reload_error: _Optional[_Union[ReloadError, _Mapping]] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("ok", "changed", "version", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    changed: bool
    version: str
    error: ReloadError
    def __init__(self, ok: _Optional[bool] = ..., changed: _Optional[bool] = ..., version: _Optional[str] = ..., error: _Optional[_Union[ReloadError, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("token", "claims", "claims_json", "action", "resource", "attributes", "context", "enforce_context")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    token: str
    claims: _struct_pb2.Struct
    claims_json: str
    action: str
    resource: str
    attributes: _struct_pb2.Struct
    context: _struct_pb2.Struct
    enforce_context: str
    def __init__(self, token: _Optional[str] = ..., claims: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., claims_json: _Optional[str] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., enforce_context: _Optional[str] = ...) -> None: ...

class NearMiss(_message.Message):
    __slots__ = ("rule", "needs")
    RULE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_FIELD_NUMBER: _ClassVar[int]
    rule: str
    needs: str
    def __init__(self, rule: _Optional[str] = ..., needs: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("allowed", "reason", "message", "matched_rules", "subject", "policy_version", "near_misses")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEAR_MISSES_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: _authz_pb2.Reason
    message: str
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    subject: str
    policy_version: str
    near_misses: _containers.RepeatedCompositeFieldContainer[NearMiss]
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[_Union[_authz_pb2.Reason, str]] = ..., message: _Optional[str] = ..., matched_rules: _Optional[_Iterable[str]] = ..., subject: _Optional[str] = ..., policy_version: _Optional[str] = ..., near_misses: _Optional[_Iterable[_Union[NearMiss, _Mapping]]] = ...) -> None: ...

class PolicyVersion(_message.Message):
    __slots__ = ("id", "version", "parent", "created_at", "author", "message", "kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: str
    parent: str
    created_at: _timestamp_pb2.Timestamp
    author: str
    message: str
    kind: str
    def __init__(self, id: _Optional[int] = ..., version: _Optional[str] = ..., parent: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., author: _Optional[str] = ..., message: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("token", "limit", "page_token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    limit: int
    page_token: str
    def __init__(self, token: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PolicyVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[PolicyVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("token", "version", "page_size", "page_token", "files")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    token: str
    version: str
    page_size: int
    page_token: str
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token: _Optional[str] = ..., version: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...

class StoredFile(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class FilePart(_message.Message):
    __slots__ = ("name", "offset", "text")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    text: str
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version", "files", "listing", "parts", "next_page_token")
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    LISTING_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    version: PolicyVersion
    files: _containers.ScalarMap[str, str]
    listing: _containers.RepeatedCompositeFieldContainer[StoredFile]
    parts: _containers.RepeatedCompositeFieldContainer[FilePart]
    next_page_token: str
    def __init__(self, version: _Optional[_Union[PolicyVersion, _Mapping]] = ..., files: _Optional[_Mapping[str, str]] = ..., listing: _Optional[_Iterable[_Union[StoredFile, _Mapping]]] = ..., parts: _Optional[_Iterable[_Union[FilePart, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("token", "version", "expected_version", "message")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    token: str
    version: str
    expected_version: str
    message: str
    def __init__(self, token: _Optional[str] = ..., version: _Optional[str] = ..., expected_version: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("version", "changed", "reload_error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    version: PolicyVersion
    changed: bool
    reload_error: ReloadError
    def __init__(self, version: _Optional[_Union[PolicyVersion, _Mapping]] = ..., changed: _Optional[bool] = ..., reload_error: _Optional[_Union[ReloadError, _Mapping]] = ...) -> None: ...
