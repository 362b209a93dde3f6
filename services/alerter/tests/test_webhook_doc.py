"""The verification snippet in docs/webhooks.md runs and agrees with our signer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from libs.common.settings import REPO_ROOT
from services.alerter.tests.test_webhook import BODY as SAMPLE_BODY
from services.alerter.webhook import headers, new_endpoint_secret

DOC = REPO_ROOT / "docs" / "webhooks.md"

Verify = Callable[..., None]


@pytest.fixture(scope="module")
def doc_verify() -> Verify:
    match = re.search(r"^```python\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)
    assert match is not None, "docs/webhooks.md has no ```python block"
    snippet = match.group(1)
    imports = set(re.findall(r"^(?:from|import) (\w+)", snippet, re.MULTILINE))
    assert imports <= {"base64", "hashlib", "hmac", "time"}, "the snippet must stay stdlib-only"
    namespace: dict[str, Any] = {"__name__": "webhooks_doc_snippet"}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    fn: Verify = namespace["verify"]
    return fn


BODY = SAMPLE_BODY


def test_snippet_accepts_a_genuine_delivery(doc_verify: Verify) -> None:
    secret = new_endpoint_secret()
    h = headers(secret, "msg_1", int(time.time()), BODY)
    doc_verify(secret, h, BODY)
    doc_verify(secret, {k.upper(): v for k, v in h.items()}, BODY)
    h["webhook-signature"] = "v1,bm90IGl0 " + h["webhook-signature"]
    doc_verify(secret, h, BODY)


@pytest.mark.parametrize(
    "tamper",
    ["body", "id", "timestamp", "old", "secret", "no-signature", "non-ascii-signature"],
)
def test_snippet_rejects(doc_verify: Verify, tamper: str) -> None:
    secret = new_endpoint_secret()
    now = int(time.time())
    body = BODY
    h = headers(secret, "msg_1", now - 600 if tamper == "old" else now, BODY)
    if tamper == "body":
        body = BODY.replace(b"a-1", b"a-2")
    elif tamper == "id":
        h["webhook-id"] = "msg_2"
    elif tamper == "timestamp":
        h["webhook-timestamp"] = str(now + 1)
    elif tamper == "secret":
        secret = new_endpoint_secret()
    elif tamper == "no-signature":
        del h["webhook-signature"]
    elif tamper == "non-ascii-signature":
        h["webhook-signature"] = "v1,ü"
    with pytest.raises(ValueError):
        doc_verify(secret, h, body)
