from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas.common import Instant, PageArgs, Schema, always_sent, page_schema


class QueueIn(Schema):
    experience_id = fields.String(data_key="experienceId", required=True, validate=validate.Length(1, 40),
                                  metadata={"example": "exp_01HXYZ123456789ABCDEFGHJK"})
    name = fields.String(required=True, validate=validate.Length(1, 200), metadata={"example": "Main queue"})
    capacity = fields.Integer(allow_none=True, validate=validate.Range(1, 10_000_000),
                              metadata={"description": "Most consumers queued at once; null = unlimited."})
    open_at = Instant(data_key="openAt", allow_none=True)
    close_at = Instant(data_key="closeAt", allow_none=True)
    admission = fields.String(load_default="any", validate=validate.OneOf(["any", "identified"]), metadata={
        "description": "`identified` refuses guests (403 `identification_required`): a guest token, free to "
                       "make, cannot farm places.", "example": "any"})

    @validates_schema
    def _window(self, data, **_kwargs):
        if data.get("open_at") and data.get("close_at") and data["close_at"] <= data["open_at"]:
            raise ValidationError("Must be after openAt.", "closeAt")


@always_sent()
class QueueOut(Schema):
    id = fields.String(metadata={"example": "queue_01HXYZ123456789ABCDEFGHJK"})
    name = fields.String()
    experience_id = fields.String(data_key="experienceId")
    sequence_id = fields.Constant(None, data_key="sequenceId", allow_none=True, dump_default=None)
    capacity = fields.Integer(allow_none=True)
    admission = fields.String(metadata={"enum": ["any", "identified"]})
    open_at = Instant(data_key="openAt", allow_none=True)
    close_at = Instant(data_key="closeAt", allow_none=True)
    time_zone = fields.String(data_key="timeZone", allow_none=True)
    status = fields.String(metadata={"enum": ["PENDING", "OPEN", "CLOSED"]})
    consumer_count = fields.Integer(data_key="consumerCount", metadata={"description": "Consumers queued now."})


QueuePage = page_schema(QueueOut, "QueuePage")


class QueueListArgs(PageArgs):
    experience_id = fields.String(data_key="experienceId", validate=validate.Length(1, 40))


@always_sent()
class QueueConsumerState(Schema):
    queue_id = fields.String(data_key="queueId")
    consumer_id = fields.String(data_key="consumerId")
    status = fields.String(metadata={"enum": ["QUEUED", "ADMITTED", "COMPLETED", "DENIED", "LEFT"]})
    position = fields.Integer(allow_none=True, metadata={
        "description": "1 + the number of consumers queued ahead (first come, first served); null unless QUEUED."})
    entered_at = Instant(data_key="enteredAt")
    admitted_at = Instant(data_key="admittedAt", allow_none=True)
    admission_token = fields.Constant(None, data_key="admissionToken", allow_none=True, dump_default=None)
    deny_reason = fields.Constant(None, data_key="denyReason", allow_none=True, dump_default=None)
    poll_after = fields.Integer(data_key="pollAfter", allow_none=True, metadata={
        "description": "Seconds to wait before asking for this state again; null unless QUEUED. Short near "
                       "admission, longer further back: 2 for positions 1-50, one more per further 50 places "
                       "(`2 + (position - 1) // 50`), at most 60 (from position 2,901 on). Shops and the SDK "
                       "poll no sooner.", "example": 2, "minimum": 2, "maximum": 60})
