"""A sender plugin in its smallest form (tests/test_plugins.py): `OTP_SMS_SENDER=test_sms`
appends each SMS as a JSON line to the file named by `TEST_SMS_FILE`."""

from __future__ import annotations

import json

from app import plugins


class FileSms:
    name = "test_sms"

    def __init__(self, path: str):
        self.path = path

    def send(self, message: plugins.Message) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"to": message.to, "body": message.body}) + "\n")


def build(ctx: plugins.SenderContext) -> FileSms:
    path = ctx.option("TEST_SMS_FILE")
    if not path:
        raise plugins.ConfigError("OTP_SMS_SENDER=test_sms needs TEST_SMS_FILE")
    return FileSms(path)


plugin = plugins.SenderPlugin(name="test_sms", channels=("sms",), build=build)
