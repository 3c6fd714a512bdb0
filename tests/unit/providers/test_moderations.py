import json

import pytest

from seawall.core.errors import InvalidRequest
from seawall.providers import moderations as m
from tests.conformance.schema import violations


def test_the_mock_answer_has_every_category_and_conforms():
    body = m.parse_moderations(json.dumps({"input": ["kill", "fine"]}).encode(), default_model="mod").body
    answer = json.loads(m.response(body, id="modr-1"))
    assert violations("CreateModerationResponse", answer) == []
    assert answer["model"] == "mod" and [r["flagged"] for r in answer["results"]] == [True, False]
    assert list(answer["results"][0]["categories"]) == list(m.CATEGORIES)


def test_no_model_and_no_default_is_a_404_naming_model():
    with pytest.raises(InvalidRequest) as info:
        m.parse_moderations(b'{"input": "x"}')
    assert (info.value.status, info.value.param) == (404, "model")
