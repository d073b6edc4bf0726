"""The request factory: one typed function per remoting request a client sends.

Each function returns a :class:`RemotingCommand` ready for
:meth:`Connection.send_request`. Header field names are the servers' (Java's
request header classes); numbers and booleans travel as strings, as Java's
header codec writes them. Fields the servers require are always present.

Also here: the answers a client gives to requests the broker sends it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

from rocketmq_proto.wire.codes import LanguageCode, RequestCode, SerializeType, TransactionState
from rocketmq_proto.wire.command import DEFAULT_VERSION, ExtTemplate, RemotingCommand, json_head

_escape = json.encoder.encode_basestring

#: Topic a broker copies the queue count from when it auto-creates a topic.
DEFAULT_TOPIC = "TBW102"
DEFAULT_TOPIC_QUEUE_NUMS = 4


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _with_bname(fields: dict[str, str], broker_name: str | None) -> dict[str, str]:
    if broker_name:
        fields["bname"] = broker_name
    return fields


def encode_properties_field(properties: Mapping[str, str]) -> str:
    """The ``properties`` header field: ``key\\x01value\\x02`` for each pair."""
    return "".join([f"{k}\x01{v}\x02" for k, v in properties.items()])


# ------------------------------------------------------------------ name server


def get_route_info(topic: str, *, accept_standard_json_only: bool = True) -> RemotingCommand:
    """GET_ROUTEINFO_BY_TOPIC (105), to a name server."""
    fields = {"topic": topic}
    if accept_standard_json_only:
        fields["acceptStandardJsonOnly"] = "true"
    return RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, fields)


def get_broker_cluster_info() -> RemotingCommand:
    """GET_BROKER_CLUSTER_INFO (106), to a name server."""
    return RemotingCommand(RequestCode.GET_BROKER_CLUSTER_INFO)


def get_all_topic_list_from_namesrv() -> RemotingCommand:
    """GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206): every topic a name server knows
    (the body a ``TopicList``)."""
    return RemotingCommand(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)


def delete_topic_in_namesrv(topic: str, cluster_name: str | None = None) -> RemotingCommand:
    """DELETE_TOPIC_IN_NAMESRV (216)."""
    fields = {"topic": topic}
    if cluster_name:
        fields["clusterName"] = cluster_name
    return RemotingCommand(RequestCode.DELETE_TOPIC_IN_NAMESRV, fields)


# ------------------------------------------------------------------------ send


class SendTemplate:
    """SEND_MESSAGE_V2 headers for one producer group and topic.

    The fields that stay the same for every message a producer sends to a topic
    are encoded once (see :class:`ExtTemplate`); :meth:`build` adds the rest.
    """

    __slots__ = ("_head_end", "_head_start", "batch", "code", "template")

    def __init__(
        self,
        producer_group: str,
        topic: str,
        *,
        default_topic: str = DEFAULT_TOPIC,
        default_topic_queue_nums: int = DEFAULT_TOPIC_QUEUE_NUMS,
        batch: bool = False,
        unit_mode: bool = False,
        reply: bool = False,
    ) -> None:
        self.batch = batch
        if reply:
            self.code = RequestCode.SEND_REPLY_MESSAGE_V2
        elif batch:
            self.code = RequestCode.SEND_BATCH_MESSAGE
        else:
            self.code = RequestCode.SEND_MESSAGE_V2
        self.template = ExtTemplate(
            {
                "a": producer_group,
                "b": topic,
                "c": default_topic,
                "d": str(default_topic_queue_nums),
                "k": _bool(unit_mode),
                "m": _bool(batch),
            }
        )
        # json_head() around a marker, split: the per-message members go between.
        marker = "\x00MEMBERS\x00"
        head = json_head(self.code, self.template.json + "," + marker)
        self._head_start, self._head_end = head.split(marker)

    def build(
        self,
        queue_id: int,
        broker_name: str,
        properties: str,
        body: bytes,
        born_timestamp: int,
        sys_flag: int = 0,
        flag: int = 0,
        reconsume_times: int = 0,
        max_reconsume_times: int | None = None,
    ) -> RemotingCommand:
        """A send request; ``properties`` from :func:`encode_properties_field`."""
        # This is the send hot path: the generic encoder would loop over a dict, so
        # the header is rendered here in one go from the template's pre-rendered
        # part, and the ext-field dict is only made if someone asks for it.
        values = (
            queue_id,
            sys_flag,
            born_timestamp,
            flag,
            properties,
            reconsume_times,
            broker_name,
            max_reconsume_times,
        )
        extra = "" if max_reconsume_times is None else f',"l":"{max_reconsume_times}"'
        head = (
            f'{self._head_start}"e":"{queue_id}","f":"{sys_flag}","g":"{born_timestamp}",'
            f'"h":"{flag}","i":{_escape(properties)},"j":"{reconsume_times}",'
            f'"n":{_escape(broker_name)}{extra}{self._head_end}'
        )
        return _SendCommand(self.code, self.template, body, head, values)


_SEND_KEYS = ("e", "f", "g", "h", "i", "j", "n", "l")
# ROCKETMQ header map entries start with an int16 key length and the key.
_KEY_HEAD = {k.encode(): struct.pack(">h", 1) + k.encode() for k in _SEND_KEYS}
_LEN32 = struct.Struct(">i").pack


class _SendCommand(RemotingCommand):
    """A send request whose ext-field dict is materialised on first access."""

    __slots__ = ("_values",)

    def __init__(
        self,
        code: int,
        template: ExtTemplate,
        body: bytes,
        head: str,
        values: tuple[int, int, int, int, str, int, str, int | None],
    ) -> None:
        # Deliberately not calling RemotingCommand.__init__: ``ext_fields`` stays
        # unset until ``__getattr__`` builds it.
        self.code = code
        self.body = body
        self.remark = None
        self.flag = 0
        self.opaque = 0
        self.language = LanguageCode.PYTHON
        self.version = DEFAULT_VERSION
        self.serialize_type = SerializeType.JSON
        self.template = template
        self.json_head = head
        self._values = values

    def binary_ext(self) -> bytes:
        # The ROCKETMQ header's map without building the dict: fixed-width keys.
        queue_id, sys_flag, born, flag, properties, reconsume, broker_name, max_re = self._values
        parts = [self.template.binary if self.template is not None else b""]
        for key, value in (
            (b"e", str(queue_id)),
            (b"f", str(sys_flag)),
            (b"g", str(born)),
            (b"h", str(flag)),
            (b"i", properties),
            (b"j", str(reconsume)),
            (b"n", broker_name),
        ):
            raw = value.encode()
            parts.append(_KEY_HEAD[key] + _LEN32(len(raw)) + raw)
        if max_re is not None:
            raw = str(max_re).encode()
            parts.append(_KEY_HEAD[b"l"] + _LEN32(len(raw)) + raw)
        return b"".join(parts)

    def __getattr__(self, name: str) -> dict[str, str]:
        if name != "ext_fields":
            raise AttributeError(name)
        fields = {k: str(v) for k, v in zip(_SEND_KEYS, self._values, strict=True) if v is not None}
        self.ext_fields = fields
        return fields


def send_message(
    *,
    producer_group: str,
    topic: str,
    queue_id: int,
    broker_name: str,
    properties: Mapping[str, str],
    body: bytes,
    born_timestamp: int,
    sys_flag: int = 0,
    flag: int = 0,
    reconsume_times: int = 0,
    max_reconsume_times: int | None = None,
    batch: bool = False,
    unit_mode: bool = False,
    default_topic: str = DEFAULT_TOPIC,
    default_topic_queue_nums: int = DEFAULT_TOPIC_QUEUE_NUMS,
) -> RemotingCommand:
    """SEND_MESSAGE_V2 (310), or SEND_BATCH_MESSAGE (320) with ``batch=True``.

    ``body`` of a batch is :func:`encode_batch`'s output. For many sends to one
    topic, keep a :class:`SendTemplate` instead.
    """
    template = SendTemplate(
        producer_group,
        topic,
        default_topic=default_topic,
        default_topic_queue_nums=default_topic_queue_nums,
        batch=batch,
        unit_mode=unit_mode,
    )
    return template.build(
        queue_id,
        broker_name,
        encode_properties_field(properties),
        body,
        born_timestamp,
        sys_flag,
        flag,
        reconsume_times,
        max_reconsume_times,
    )


def send_reply_message(
    *,
    producer_group: str,
    topic: str,
    queue_id: int,
    broker_name: str,
    properties: Mapping[str, str],
    body: bytes,
    born_timestamp: int,
    sys_flag: int = 0,
    flag: int = 0,
) -> RemotingCommand:
    """SEND_REPLY_MESSAGE_V2 (325): a replier's answer to a request-reply message."""
    template = SendTemplate(producer_group, topic, reply=True)
    return template.build(
        queue_id,
        broker_name,
        encode_properties_field(properties),
        body,
        born_timestamp,
        sys_flag,
        flag,
    )


def end_transaction(
    *,
    producer_group: str,
    topic: str,
    tran_state_table_offset: int,
    commit_log_offset: int,
    state: TransactionState,
    msg_id: str,
    transaction_id: str | None,
    from_transaction_check: bool = False,
    remark: str | None = None,
    broker_name: str | None = None,
) -> RemotingCommand:
    """END_TRANSACTION (37), sent oneway to the master that holds the half message."""
    fields = {
        "topic": topic,
        "producerGroup": producer_group,
        "tranStateTableOffset": str(tran_state_table_offset),
        "commitLogOffset": str(commit_log_offset),
        "commitOrRollback": str(int(state)),
        "fromTransactionCheck": _bool(from_transaction_check),
        "msgId": msg_id,
    }
    if transaction_id:
        fields["transactionId"] = transaction_id
    return RemotingCommand(
        RequestCode.END_TRANSACTION, _with_bname(fields, broker_name), remark=remark
    )


# --------------------------------------------------------------------- consume


def pull_message(
    *,
    consumer_group: str,
    topic: str,
    queue_id: int,
    queue_offset: int,
    max_msg_nums: int,
    sys_flag: int,
    commit_offset: int,
    suspend_timeout_millis: int,
    subscription: str | None,
    sub_version: int,
    expression_type: str = "TAG",
    max_msg_bytes: int | None = None,
    broker_name: str | None = None,
) -> RemotingCommand:
    """PULL_MESSAGE (11)."""
    fields = {
        "consumerGroup": consumer_group,
        "topic": topic,
        "queueId": str(queue_id),
        "queueOffset": str(queue_offset),
        "maxMsgNums": str(max_msg_nums),
        "sysFlag": str(sys_flag),
        "commitOffset": str(commit_offset),
        "suspendTimeoutMillis": str(suspend_timeout_millis),
        "subVersion": str(sub_version),
        "expressionType": expression_type,
    }
    if subscription is not None:
        fields["subscription"] = subscription
    if max_msg_bytes is not None:
        fields["maxMsgBytes"] = str(max_msg_bytes)
    return RemotingCommand(RequestCode.PULL_MESSAGE, _with_bname(fields, broker_name))


def query_consumer_offset(
    *,
    consumer_group: str,
    topic: str,
    queue_id: int,
    set_zero_if_not_found: bool | None = None,
    broker_name: str | None = None,
) -> RemotingCommand:
    """QUERY_CONSUMER_OFFSET (14); the answer's ``offset``, or QUERY_NOT_FOUND (22)."""
    fields = {"consumerGroup": consumer_group, "topic": topic, "queueId": str(queue_id)}
    if set_zero_if_not_found is not None:
        fields["setZeroIfNotFound"] = _bool(set_zero_if_not_found)
    return RemotingCommand(RequestCode.QUERY_CONSUMER_OFFSET, _with_bname(fields, broker_name))


def update_consumer_offset(
    *,
    consumer_group: str,
    topic: str,
    queue_id: int,
    commit_offset: int,
    broker_name: str | None = None,
) -> RemotingCommand:
    """UPDATE_CONSUMER_OFFSET (15); Java sends it oneway from its periodic commit."""
    fields = {
        "consumerGroup": consumer_group,
        "topic": topic,
        "queueId": str(queue_id),
        "commitOffset": str(commit_offset),
    }
    return RemotingCommand(RequestCode.UPDATE_CONSUMER_OFFSET, _with_bname(fields, broker_name))


def consumer_send_msg_back(
    *,
    group: str,
    commit_log_offset: int,
    delay_level: int,
    origin_msg_id: str,
    origin_topic: str,
    max_reconsume_times: int,
    unit_mode: bool = False,
    broker_name: str | None = None,
) -> RemotingCommand:
    """CONSUMER_SEND_MSG_BACK (36): return a failed message for a later retry."""
    fields = {
        "offset": str(commit_log_offset),
        "group": group,
        "delayLevel": str(delay_level),
        "originMsgId": origin_msg_id,
        "originTopic": origin_topic,
        "unitMode": _bool(unit_mode),
        "maxReconsumeTimes": str(max_reconsume_times),
    }
    return RemotingCommand(RequestCode.CONSUMER_SEND_MSG_BACK, _with_bname(fields, broker_name))


# ------------------------------------------------------------------ POP (5.x)


def pop_message(
    *,
    consumer_group: str,
    topic: str,
    queue_id: int,
    max_msg_nums: int,
    invisible_time_ms: int,
    poll_time_ms: int,
    born_time_ms: int,
    init_mode: int,
    expression_type: str | None = None,
    expression: str | None = None,
    order: bool = False,
    attempt_id: str | None = None,
    broker_name: str | None = None,
) -> RemotingCommand:
    """POP_MESSAGE (200050): up to ``max_msg_nums`` (at most 32) messages, hidden
    for ``invisible_time_ms`` until acked. ``queue_id`` -1: any of the broker's
    read queues. ``poll_time_ms`` 0 answers at once; the broker answers
    POLLING_TIMEOUT at once unless ``born_time_ms`` (the client's wall clock)
    is within 500 ms of its own. ``init_mode``: 0 from the queue's first
    message, 1 from its last, for a group with no offset yet."""
    fields = {
        "consumerGroup": consumer_group,
        "topic": topic,
        "queueId": str(queue_id),
        "maxMsgNums": str(max_msg_nums),
        "invisibleTime": str(invisible_time_ms),
        "pollTime": str(poll_time_ms),
        "bornTime": str(born_time_ms),
        "initMode": str(init_mode),
        "order": _bool(order),
    }
    if expression is not None:
        fields["expType"] = expression_type or "TAG"
        fields["exp"] = expression
    if attempt_id is not None:
        fields["attemptId"] = attempt_id
    return RemotingCommand(RequestCode.POP_MESSAGE, _with_bname(fields, broker_name))


def _by_handle(
    consumer_group: str, topic: str, queue_id: int, extra_info: str, offset: int
) -> dict[str, str]:
    """The fields that name a popped message by its receipt handle."""
    return {
        "consumerGroup": consumer_group,
        "topic": topic,
        "queueId": str(queue_id),
        "extraInfo": extra_info,
        "offset": str(offset),
    }


def ack_message(
    *,
    consumer_group: str,
    topic: str,
    queue_id: int,
    extra_info: str,
    offset: int,
    broker_name: str | None = None,
) -> RemotingCommand:
    """ACK_MESSAGE (200051): a popped message is consumed. ``topic`` is the real
    topic (the pop retry topic for a retried message), ``extra_info`` its receipt
    handle (``POP_CK``) and ``offset`` its queue offset."""
    fields = _by_handle(consumer_group, topic, queue_id, extra_info, offset)
    return RemotingCommand(RequestCode.ACK_MESSAGE, _with_bname(fields, broker_name))


def batch_ack_message(body: bytes) -> RemotingCommand:
    """BATCH_ACK_MESSAGE (200151): no header; ``body`` a ``BatchAckMessageRequestBody``."""
    return RemotingCommand(RequestCode.BATCH_ACK_MESSAGE, None, body)


def change_invisible_time(
    *,
    consumer_group: str,
    topic: str,
    queue_id: int,
    extra_info: str,
    offset: int,
    invisible_time_ms: int,
    broker_name: str | None = None,
) -> RemotingCommand:
    """CHANGE_MESSAGE_INVISIBLETIME (200053): hide a popped message for
    ``invisible_time_ms`` from now. The answer's ``popTime``, ``invisibleTime``
    and ``reviveQid`` make its new receipt handle (the old one is acked)."""
    fields = _by_handle(consumer_group, topic, queue_id, extra_info, offset)
    fields["invisibleTime"] = str(invisible_time_ms)
    return RemotingCommand(
        RequestCode.CHANGE_MESSAGE_INVISIBLETIME, _with_bname(fields, broker_name)
    )


def get_consumer_list_by_group(consumer_group: str) -> RemotingCommand:
    """GET_CONSUMER_LIST_BY_GROUP (38); the body lists the group's client ids."""
    return RemotingCommand(
        RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": consumer_group}
    )


def lock_batch_mq(body: bytes) -> RemotingCommand:
    """LOCK_BATCH_MQ (41); ``body`` from :func:`encode_lock_batch`."""
    return RemotingCommand(RequestCode.LOCK_BATCH_MQ, None, body)


def unlock_batch_mq(body: bytes) -> RemotingCommand:
    """UNLOCK_BATCH_MQ (42); ``body`` from :func:`encode_lock_batch`."""
    return RemotingCommand(RequestCode.UNLOCK_BATCH_MQ, None, body)


# -------------------------------------------------------------- client session


def heart_beat(body: bytes) -> RemotingCommand:
    """HEART_BEAT (34); ``body`` from :func:`encode_heartbeat`."""
    return RemotingCommand(RequestCode.HEART_BEAT, None, body)


def get_broker_config() -> RemotingCommand:
    """GET_BROKER_CONFIG (26): the broker's settings as ``key=value`` lines in the body."""
    return RemotingCommand(RequestCode.GET_BROKER_CONFIG)


def unregister_client(
    client_id: str, *, producer_group: str | None = None, consumer_group: str | None = None
) -> RemotingCommand:
    """UNREGISTER_CLIENT (35)."""
    fields = {"clientID": client_id}
    if producer_group:
        fields["producerGroup"] = producer_group
    if consumer_group:
        fields["consumerGroup"] = consumer_group
    return RemotingCommand(RequestCode.UNREGISTER_CLIENT, fields)


# ----------------------------------------------------------------------- admin


def get_max_offset(topic: str, queue_id: int, *, broker_name: str | None = None) -> RemotingCommand:
    """GET_MAX_OFFSET (30); the answer's ``offset`` is the next offset to be written."""
    fields = {"topic": topic, "queueId": str(queue_id)}
    return RemotingCommand(RequestCode.GET_MAX_OFFSET, _with_bname(fields, broker_name))


def get_min_offset(topic: str, queue_id: int, *, broker_name: str | None = None) -> RemotingCommand:
    """GET_MIN_OFFSET (31)."""
    fields = {"topic": topic, "queueId": str(queue_id)}
    return RemotingCommand(RequestCode.GET_MIN_OFFSET, _with_bname(fields, broker_name))


def search_offset_by_timestamp(
    topic: str,
    queue_id: int,
    timestamp_ms: int,
    *,
    boundary_type: str | None = None,
    broker_name: str | None = None,
) -> RemotingCommand:
    """SEARCH_OFFSET_BY_TIMESTAMP (29); ``boundary_type`` LOWER or UPPER (5.x)."""
    fields = {"topic": topic, "queueId": str(queue_id), "timestamp": str(timestamp_ms)}
    if boundary_type:
        fields["boundaryType"] = boundary_type
    return RemotingCommand(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, _with_bname(fields, broker_name))


def invoke_broker_to_reset_offset(
    *,
    topic: str,
    group: str,
    timestamp_ms: int,
    force: bool = True,
    queue_id: int = -1,
    offset: int | None = None,
) -> RemotingCommand:
    """INVOKE_BROKER_TO_RESET_OFFSET (222): move ``group``'s offsets of every queue
    of ``topic`` on one broker to the first message stored at ``timestamp_ms`` or
    later (``force``: also forwards; else only back), and tell its consumers. With
    ``queue_id`` and ``offset``, a 5.x broker (server-side reset) sets that one
    queue's offset."""
    fields = {
        "topic": topic,
        "group": group,
        "queueId": str(queue_id),
        "timestamp": str(timestamp_ms),
        "isForce": "true" if force else "false",
    }
    if offset is not None:
        fields["offset"] = str(offset)
    return RemotingCommand(RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, fields)


def query_message(
    *,
    topic: str,
    key: str,
    max_num: int,
    begin_timestamp: int,
    end_timestamp: int,
    unique_key: bool = False,
) -> RemotingCommand:
    """QUERY_MESSAGE (12): messages by key (or by UNIQ_KEY with ``unique_key=True``)."""
    fields = {
        "topic": topic,
        "key": key,
        "maxNum": str(max_num),
        "beginTimestamp": str(begin_timestamp),
        "endTimestamp": str(end_timestamp),
    }
    if unique_key:
        fields["_UNIQUE_KEY_QUERY"] = "true"
    return RemotingCommand(RequestCode.QUERY_MESSAGE, fields)


def view_message_by_id(commit_log_offset: int, *, topic: str | None = None) -> RemotingCommand:
    """VIEW_MESSAGE_BY_ID (33): the stored message at a commit-log offset."""
    fields = {"offset": str(commit_log_offset)}
    if topic:
        fields["topic"] = topic
    return RemotingCommand(RequestCode.VIEW_MESSAGE_BY_ID, fields)


def get_topic_stats_info(topic: str) -> RemotingCommand:
    """GET_TOPIC_STATS_INFO (202): each queue's min and max offset and last
    store time on one broker (the body a ``TopicStatsTable``)."""
    return RemotingCommand(RequestCode.GET_TOPIC_STATS_INFO, {"topic": topic})


def get_all_subscription_group_config() -> RemotingCommand:
    """GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201): every consumer group config of one
    broker. Without the paging fields (5.x) the broker answers with all of them."""
    return RemotingCommand(RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)


def update_broker_config(body: bytes) -> RemotingCommand:
    """UPDATE_BROKER_CONFIG (25): no header; ``body`` the settings to change as
    ``key=value`` lines (:func:`~rocketmq_proto.wire.bodies.encode_properties_text`)."""
    return RemotingCommand(RequestCode.UPDATE_BROKER_CONFIG, None, body)


def get_broker_runtime_info() -> RemotingCommand:
    """GET_BROKER_RUNTIME_INFO (28): a broker's figures (TPS, disk, versions) as a
    ``KVTable`` body."""
    return RemotingCommand(RequestCode.GET_BROKER_RUNTIME_INFO)


def consume_message_directly(
    *, consumer_group: str, client_id: str, msg_id: str, topic: str | None = None
) -> RemotingCommand:
    """CONSUME_MESSAGE_DIRECTLY (309) to the broker storing the message: it reads
    the message at ``msg_id`` (an offset message id) and hands it to consumer
    ``client_id`` of ``consumer_group``, whose answer (a
    ``ConsumeMessageDirectlyResult`` body) it relays."""
    fields = {"consumerGroup": consumer_group, "clientId": client_id, "msgId": msg_id}
    if topic:
        fields["topic"] = topic
    return RemotingCommand(RequestCode.CONSUME_MESSAGE_DIRECTLY, fields)


def update_and_create_topic(
    topic: str,
    *,
    read_queue_nums: int = 8,
    write_queue_nums: int = 8,
    perm: int = 6,
    topic_filter_type: str = "SINGLE_TAG",
    topic_sys_flag: int = 0,
    order: bool = False,
    attributes: Mapping[str, str] | None = None,
    default_topic: str = DEFAULT_TOPIC,
) -> RemotingCommand:
    """UPDATE_AND_CREATE_TOPIC (17), to each broker that should hold the topic.

    ``attributes`` (5.x) are written as Java does: ``+key=value`` joined by commas,
    e.g. ``{"message.type": "FIFO"}``. A key may carry its sign as in ``mqadmin
    updateTopic -a +message.type=FIFO``: ``+`` (set, the default) or ``-`` (remove).
    """
    fields = {
        "topic": topic,
        "defaultTopic": default_topic,
        "readQueueNums": str(read_queue_nums),
        "writeQueueNums": str(write_queue_nums),
        "perm": str(perm),
        "topicFilterType": topic_filter_type,
        "topicSysFlag": str(topic_sys_flag),
        "order": _bool(order),
    }
    if attributes:
        fields["attributes"] = ",".join(
            f"{k if k[:1] in ('+', '-') else '+' + k}={v}" for k, v in attributes.items()
        )
    return RemotingCommand(RequestCode.UPDATE_AND_CREATE_TOPIC, fields)


def delete_topic_in_broker(topic: str) -> RemotingCommand:
    """DELETE_TOPIC_IN_BROKER (215)."""
    return RemotingCommand(RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": topic})


def update_and_create_subscription_group(body: bytes) -> RemotingCommand:
    """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200); ``body`` is the group's JSON config."""
    return RemotingCommand(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, None, body)


def delete_subscription_group(group_name: str, *, clean_offset: bool = True) -> RemotingCommand:
    """DELETE_SUBSCRIPTIONGROUP (207)."""
    return RemotingCommand(
        RequestCode.DELETE_SUBSCRIPTIONGROUP,
        {"groupName": group_name, "cleanOffset": _bool(clean_offset)},
    )


# ------------------------------------------------- answers to broker requests


def consume_message_directly_result(
    result: str,
    *,
    order: bool = False,
    auto_commit: bool = True,
    remark: str | None = None,
    spent_time_millis: int = 0,
) -> bytes:
    """The JSON body answering CONSUME_MESSAGE_DIRECTLY (309).

    ``result`` is Java's ``CMResult`` name: CR_SUCCESS, CR_LATER, CR_ROLLBACK,
    CR_COMMIT, CR_THROW_EXCEPTION or CR_RETURN_NULL.
    """
    return json.dumps(
        {
            "order": order,
            "autoCommit": auto_commit,
            "consumeResult": result,
            "remark": remark or "",
            "spentTimeMills": spent_time_millis,
        },
        separators=(",", ":"),
    ).encode()


def query_assignment(body: bytes) -> RemotingCommand:
    """QUERY_ASSIGNMENT (400): no header; ``body`` a ``QueryAssignmentRequestBody``."""
    return RemotingCommand(RequestCode.QUERY_ASSIGNMENT, None, body)


def set_message_request_mode(body: bytes) -> RemotingCommand:
    """SET_MESSAGE_REQUEST_MODE (401): no header; ``body`` a
    ``SetMessageRequestModeRequestBody``."""
    return RemotingCommand(RequestCode.SET_MESSAGE_REQUEST_MODE, None, body)


def get_consume_stats(consumer_group: str, topic: str | None = None) -> RemotingCommand:
    """GET_CONSUME_STATS (208): a group's progress on each queue of one broker (of
    ``topic`` only, when given)."""
    fields = {"consumerGroup": consumer_group}
    if topic:
        fields["topic"] = topic
    return RemotingCommand(RequestCode.GET_CONSUME_STATS, fields)


def get_consumer_connection_list(consumer_group: str) -> RemotingCommand:
    """GET_CONSUMER_CONNECTION_LIST (203): the clients of a group a broker knows."""
    return RemotingCommand(
        RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": consumer_group}
    )


def get_consumer_running_info(
    consumer_group: str, client_id: str, jstack: bool = False
) -> RemotingCommand:
    """GET_CONSUMER_RUNNING_INFO (307) to a broker, which asks the client itself."""
    return RemotingCommand(
        RequestCode.GET_CONSUMER_RUNNING_INFO,
        {"consumerGroup": consumer_group, "clientId": client_id, "jstackEnable": _bool(jstack)},
    )
