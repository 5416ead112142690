import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_ALLOWED: _ClassVar[Reason]
    REASON_NO_MATCHING_RULE: _ClassVar[Reason]
    REASON_EXPLICIT_DENY: _ClassVar[Reason]
    REASON_TOKEN_MISSING: _ClassVar[Reason]
    REASON_TOKEN_MALFORMED: _ClassVar[Reason]
    REASON_TOKEN_EXPIRED: _ClassVar[Reason]
    REASON_TOKEN_NOT_YET_VALID: _ClassVar[Reason]
    REASON_TOKEN_SIGNATURE_INVALID: _ClassVar[Reason]
    REASON_TOKEN_AUDIENCE_MISMATCH: _ClassVar[Reason]
    REASON_TOKEN_ISSUER_MISMATCH: _ClassVar[Reason]
    REASON_TOKEN_ALGORITHM_NOT_ALLOWED: _ClassVar[Reason]
    REASON_TOKEN_KEY_UNKNOWN: _ClassVar[Reason]
    REASON_TOKEN_NOT_ACCESS_TOKEN: _ClassVar[Reason]
    REASON_POLICY_ERROR: _ClassVar[Reason]
    REASON_ATTRIBUTE_MISSING: _ClassVar[Reason]

class PlanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_KIND_UNSPECIFIED: _ClassVar[PlanKind]
    PLAN_KIND_ALWAYS_ALLOWED: _ClassVar[PlanKind]
    PLAN_KIND_ALWAYS_DENIED: _ClassVar[PlanKind]
    PLAN_KIND_CONDITIONAL: _ClassVar[PlanKind]

class PlanOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_OPERATOR_UNSPECIFIED: _ClassVar[PlanOperator]
    PLAN_OPERATOR_EQ: _ClassVar[PlanOperator]
    PLAN_OPERATOR_NE: _ClassVar[PlanOperator]
    PLAN_OPERATOR_LT: _ClassVar[PlanOperator]
    PLAN_OPERATOR_LE: _ClassVar[PlanOperator]
    PLAN_OPERATOR_GT: _ClassVar[PlanOperator]
    PLAN_OPERATOR_GE: _ClassVar[PlanOperator]
    PLAN_OPERATOR_IN: _ClassVar[PlanOperator]
    PLAN_OPERATOR_LIKE: _ClassVar[PlanOperator]
REASON_UNSPECIFIED: Reason
REASON_ALLOWED: Reason
REASON_NO_MATCHING_RULE: Reason
REASON_EXPLICIT_DENY: Reason
REASON_TOKEN_MISSING: Reason
REASON_TOKEN_MALFORMED: Reason
REASON_TOKEN_EXPIRED: Reason
REASON_TOKEN_NOT_YET_VALID: Reason
REASON_TOKEN_SIGNATURE_INVALID: Reason
REASON_TOKEN_AUDIENCE_MISMATCH: Reason
REASON_TOKEN_ISSUER_MISMATCH: Reason
REASON_TOKEN_ALGORITHM_NOT_ALLOWED: Reason
REASON_TOKEN_KEY_UNKNOWN: Reason
REASON_TOKEN_NOT_ACCESS_TOKEN: Reason
REASON_POLICY_ERROR: Reason
REASON_ATTRIBUTE_MISSING: Reason
PLAN_KIND_UNSPECIFIED: PlanKind
PLAN_KIND_ALWAYS_ALLOWED: PlanKind
PLAN_KIND_ALWAYS_DENIED: PlanKind
PLAN_KIND_CONDITIONAL: PlanKind
PLAN_OPERATOR_UNSPECIFIED: PlanOperator
PLAN_OPERATOR_EQ: PlanOperator
PLAN_OPERATOR_NE: PlanOperator
PLAN_OPERATOR_LT: PlanOperator
PLAN_OPERATOR_LE: PlanOperator
PLAN_OPERATOR_GT: PlanOperator
PLAN_OPERATOR_GE: PlanOperator
PLAN_OPERATOR_IN: PlanOperator
PLAN_OPERATOR_LIKE: PlanOperator

class CheckRequest(_message.Message):
    __slots__ = ("token", "resource", "action", "attributes", "context", "explain", "enforce_context")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    token: str
    resource: str
    action: str
    attributes: _struct_pb2.Struct
    context: _struct_pb2.Struct
    explain: bool
    enforce_context: str
    def __init__(self, token: _Optional[str] = ..., resource: _Optional[str] = ..., action: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., explain: _Optional[bool] = ..., enforce_context: _Optional[str] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("allowed", "reason", "message", "matched_rules", "subject", "policy_version", "decision_id")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: Reason
    message: str
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    subject: str
    policy_version: str
    decision_id: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., matched_rules: _Optional[_Iterable[str]] = ..., subject: _Optional[str] = ..., policy_version: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class BatchCheckItem(_message.Message):
    __slots__ = ("correlation_id", "resource", "action", "attributes", "context", "enforce_context")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    resource: str
    action: str
    attributes: _struct_pb2.Struct
    context: _struct_pb2.Struct
    enforce_context: str
    def __init__(self, correlation_id: _Optional[str] = ..., resource: _Optional[str] = ..., action: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., enforce_context: _Optional[str] = ...) -> None: ...

class BatchCheckRequest(_message.Message):
    __slots__ = ("token", "items", "explain")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    token: str
    items: _containers.RepeatedCompositeFieldContainer[BatchCheckItem]
    explain: bool
    def __init__(self, token: _Optional[str] = ..., items: _Optional[_Iterable[_Union[BatchCheckItem, _Mapping]]] = ..., explain: _Optional[bool] = ...) -> None: ...

class BatchCheckResult(_message.Message):
    __slots__ = ("correlation_id", "allowed", "reason", "message", "matched_rules")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    allowed: bool
    reason: Reason
    message: str
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, correlation_id: _Optional[str] = ..., allowed: _Optional[bool] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., matched_rules: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchCheckResponse(_message.Message):
    __slots__ = ("results", "subject", "policy_version", "decision_id")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchCheckResult]
    subject: str
    policy_version: str
    decision_id: str
    def __init__(self, results: _Optional[_Iterable[_Union[BatchCheckResult, _Mapping]]] = ..., subject: _Optional[str] = ..., policy_version: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class GetVisibilityRequest(_message.Message):
    __slots__ = ("token", "elements", "prefix", "action", "enforce_context")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    token: str
    elements: _containers.RepeatedScalarFieldContainer[str]
    prefix: str
    action: str
    enforce_context: str
    def __init__(self, token: _Optional[str] = ..., elements: _Optional[_Iterable[str]] = ..., prefix: _Optional[str] = ..., action: _Optional[str] = ..., enforce_context: _Optional[str] = ...) -> None: ...

class GetVisibilityResponse(_message.Message):
    __slots__ = ("visible", "decisions", "subject", "policy_version", "valid_until", "reason", "message")
    class DecisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    VISIBLE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    visible: _containers.RepeatedScalarFieldContainer[str]
    decisions: _containers.ScalarMap[str, bool]
    subject: str
    policy_version: str
    valid_until: _timestamp_pb2.Timestamp
    reason: Reason
    message: str
    def __init__(self, visible: _Optional[_Iterable[str]] = ..., decisions: _Optional[_Mapping[str, bool]] = ..., subject: _Optional[str] = ..., policy_version: _Optional[str] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class GetPrincipalRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class GetPrincipalResponse(_message.Message):
    __slots__ = ("authenticated", "reason", "message", "subject", "permissions", "roles", "scopes", "org_id", "client_id", "machine", "expires_at", "hints")
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    authenticated: bool
    reason: Reason
    message: str
    subject: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    org_id: str
    client_id: str
    machine: bool
    expires_at: _timestamp_pb2.Timestamp
    hints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, authenticated: _Optional[bool] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., subject: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., org_id: _Optional[str] = ..., client_id: _Optional[str] = ..., machine: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hints: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanResourcesRequest(_message.Message):
    __slots__ = ("token", "action", "resource", "attributes", "context", "explain", "enforce_context")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    token: str
    action: str
    resource: str
    attributes: _struct_pb2.Struct
    context: _struct_pb2.Struct
    explain: bool
    enforce_context: str
    def __init__(self, token: _Optional[str] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., explain: _Optional[bool] = ..., enforce_context: _Optional[str] = ...) -> None: ...

class PlanCondition(_message.Message):
    __slots__ = ("all", "any", "negate", "compare", "is_null")
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    all: PlanConditionList
    any: PlanConditionList
    negate: PlanCondition
    compare: PlanComparison
    is_null: str
    def __init__(self, all: _Optional[_Union[PlanConditionList, _Mapping]] = ..., any: _Optional[_Union[PlanConditionList, _Mapping]] = ..., negate: _Optional[_Union[PlanCondition, _Mapping]] = ..., compare: _Optional[_Union[PlanComparison, _Mapping]] = ..., is_null: _Optional[str] = ...) -> None: ...

class PlanConditionList(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[PlanCondition]
    def __init__(self, conditions: _Optional[_Iterable[_Union[PlanCondition, _Mapping]]] = ...) -> None: ...

class PlanComparison(_message.Message):
    __slots__ = ("operator", "field", "value")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    operator: PlanOperator
    field: str
    value: _struct_pb2.Value
    def __init__(self, operator: _Optional[_Union[PlanOperator, str]] = ..., field: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class PlanResourcesResponse(_message.Message):
    __slots__ = ("kind", "condition", "reason", "message", "subject", "policy_version", "decision_id", "matched_rules", "fields")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    kind: PlanKind
    condition: PlanCondition
    reason: Reason
    message: str
    subject: str
    policy_version: str
    decision_id: str
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[PlanKind, str]] = ..., condition: _Optional[_Union[PlanCondition, _Mapping]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., subject: _Optional[str] = ..., policy_version: _Optional[str] = ..., decision_id: _Optional[str] = ..., matched_rules: _Optional[_Iterable[str]] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...
