import pytest

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.query_retriever import QueryRenderError, QueryRetriever, TextQueryRetriever


def _input(session_id: str, query) -> FineTuningInput:
    return FineTuningInput(session_id=session_id, query=query, results=["a"], ranks={"a": 1}, events=[])


def test_string_queries_pass_through_and_objects_render_by_template() -> None:
    retriever = TextQueryRetriever(template="{title} in {category}")
    assert isinstance(retriever, QueryRetriever)
    inputs = [_input("s1", "red shoes"), _input("s2", {"title": "boots", "category": "winter", "extra": 1})]
    assert retriever.get_queries(inputs) == ["red shoes", "boots in winter"]


def test_missing_field_is_named_with_the_session() -> None:
    retriever = TextQueryRetriever(template="{title} {category}")
    with pytest.raises(QueryRenderError, match=r"session 's9'.*'category'.*present: title"):
        retriever.get_queries([_input("s9", {"title": "boots"})])


def test_without_template_object_values_are_joined_in_order() -> None:
    retriever = TextQueryRetriever()
    assert retriever.get_query({"text": "blue", "tags": ["a", "b"], "none": None}) == "blue a b"


@pytest.mark.parametrize("template", ["{} {}", "no fields", "{title"])
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(QueryRenderError):
        TextQueryRetriever(template=template)


def test_non_text_query_is_refused() -> None:
    with pytest.raises(QueryRenderError, match="is a int"):
        TextQueryRetriever().get_query(42)  # type: ignore[arg-type]
