"""Prompt files: parsing, validation errors that name the file and field, the content hash, rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stratus.errors import InvalidInput
from stratus.llm.types import Message
from stratus.prompts.files import load_file
from stratus.prompts.models import Placeholder, PromptFileError, PromptVersion, build_prompt

GREETING = """\
description: Greets a user by name.
model: fast
parameters: {temperature: 0.2, max_tokens: 50, stop: ["\\n\\n"]}
variables: [user, topics]
messages:
  - role: system
    content: |
      You greet {{ user }}.
      {% for t in topics %}
      - {{ t }}
      {% endfor %}
  - placeholder: history
  - role: user
    content: Say hello.
"""


def write(tmp_path: Path, text: str, name: str = "greeting", version: str = "1") -> Path:
    path = tmp_path / name / f"{version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def one_message_prompt(tmp_path: Path, variable: str, content: str) -> PromptVersion:
    """A prompt of one user message whose template is `content` (no double quotes in it), taking `variable`."""
    return load_file(write(tmp_path, f"""\
        description: d
        model: fast
        variables: [{variable}]
        messages:
          - {{role: user, content: "{content}"}}
        """))


def test_parses_a_prompt_file(tmp_path: Path) -> None:
    prompt = load_file(write(tmp_path, GREETING, version="3"))

    assert (prompt.name, prompt.version, prompt.model) == ("greeting", 3, "fast")
    assert prompt.variables == ("topics", "user")
    assert prompt.parameters == {"temperature": 0.2, "max_tokens": 50, "stop": ["\n\n"]}  # only those set
    assert isinstance(prompt.messages[1], Placeholder)
    assert len(prompt.content_hash) == 64


def test_hash_ignores_yaml_formatting_but_not_content(tmp_path: Path) -> None:
    original = load_file(write(tmp_path, GREETING))
    # Same content: flow/block style swapped, keys reordered, comments, quoting, variables reordered.
    reformatted = load_file(write(tmp_path / "b", """\
        # a comment
        model: "fast"
        variables:
          - user
          - topics
        description: 'Greets a user by name.'
        parameters:
          stop: ["\\n\\n"]
          max_tokens: 50
          temperature: 0.2
        messages:
          - {role: system, content: "You greet {{ user }}.\\n{% for t in topics %}\\n- {{ t }}\\n{% endfor %}\\n"}
          - {placeholder: history}
          - role: user
            content: >-
              Say hello.
        """))
    changed = load_file(write(tmp_path / "c", GREETING.replace("Say hello.", "Say hi.")))

    assert reformatted.content_hash == original.content_hash
    assert changed.content_hash != original.content_hash


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ("description: d\nmodel: fast\nvariables: [x]\nmessages:\n  - {role: user, content: '{{ y }}'}\n",
         "messages[0].content", "undeclared variable(s) y"),
        ("description: d\nmodel: fast\nvariables: [x, unused]\nmessages:\n  - {role: user, content: '{{ x }}'}\n",
         "variables", "never used: unused"),
        ("description: d\nmodel: fast\nmessages:\n  - {role: user, content: '{% for x in %}'}\n",
         "messages[0].content", "syntax error on line 1"),
        ("description: d\nmodel: fast\nparameters: {temprature: 1}\nmessages:\n  - {role: user, content: hi}\n",
         "parameters.temprature", "Extra inputs are not permitted"),
        ("description: d\nmodel: fast\nparameters: {temperature: 3}\nmessages:\n  - {role: user, content: hi}\n",
         "parameters.temperature", "less than or equal to 2"),
        ("description: d\nmodel: fast\nmessages:\n  - {role: robot, content: hi}\n",
         "messages[0].role", "'system'"),
        ("description: d\nmodel: fast\nmessages:\n  - {placeholder: memory}\n",
         "messages[0].placeholder", "'history'"),
        ("description: d\nmodel: fast\nmessages:\n  - {placeholder: history}\n  - {placeholder: history}\n",
         "messages", "at most one"),
        ("description: d\nmessages:\n  - {role: user, content: hi}\n", "model", "Field required"),
        ("description: d\nmodel: fast\nmessages: []\n", "messages", "at least 1"),
        ("- just\n- a list\n", "prompt", "a mapping"),
        ("description: d\nmodel: [unclosed\n", "prompt", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_file_and_the_field(tmp_path: Path, body: str, field: str, fragment: str) -> None:
    path = write(tmp_path, body)

    with pytest.raises(PromptFileError) as caught:
        load_file(path)

    assert caught.value.field == field
    assert str(path) in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.parametrize("filename", ["0.yaml", "01.yaml", "v1.yaml", "1.yml"])
def test_version_comes_from_a_positive_integer_file_name(tmp_path: Path, filename: str) -> None:
    path = tmp_path / "greeting" / filename
    path.parent.mkdir()
    path.write_text(GREETING)

    with pytest.raises(PromptFileError, match="positive integer version") as caught:
        load_file(path)
    assert caught.value.field == "version"


def test_bad_prompt_name_is_refused() -> None:
    with pytest.raises(PromptFileError, match="prompt name") as caught:
        build_prompt("Bad_Name", 1, {"description": "d", "model": "fast", "messages": []}, source="x")
    assert caught.value.field == "name"


def test_render_fills_templates_and_inserts_history(tmp_path: Path) -> None:
    prompt = load_file(write(tmp_path, GREETING))
    history = [Message(role="user", content="hi"), Message(role="assistant", content="hello!")]

    messages = prompt.render({"user": "Ada", "topics": ["maps", "tea"]}, history)

    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0].content == "You greet Ada.\n- maps\n- tea"  # no blank lines left by {% for %}
    assert messages[1:3] == history
    assert messages[3].content == "Say hello."


def test_render_without_history_leaves_the_placeholder_empty(tmp_path: Path) -> None:
    prompt = load_file(write(tmp_path, GREETING))

    assert [m.role for m in prompt.render({"user": "Ada", "topics": []})] == ["system", "user"]


@pytest.mark.parametrize(
    ("variables", "field", "fragment"),
    [
        ({"user": "Ada"}, "variables.topics", "missing variable(s): topics"),
        ({"user": "Ada", "topics": [], "mood": "x"}, "variables.mood", "unexpected variable(s): mood"),
    ],
)
def test_render_names_missing_and_extra_variables(tmp_path: Path, variables: dict, field: str, fragment: str) -> None:
    prompt = load_file(write(tmp_path, GREETING))

    with pytest.raises(InvalidInput) as caught:
        prompt.render(variables)

    assert caught.value.field == field
    assert fragment in caught.value.message
    assert "greeting v1" in caught.value.message


def test_history_is_refused_by_a_prompt_without_a_placeholder(tmp_path: Path) -> None:
    prompt = load_file(write(tmp_path, GREETING.replace("  - placeholder: history\n", "")))

    with pytest.raises(InvalidInput, match="no {placeholder: history}"):
        prompt.render({"user": "Ada", "topics": []}, [Message(role="user", content="hi")])


def test_a_missing_attribute_in_a_value_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    prompt = one_message_prompt(tmp_path, "items", "{% for i in items %}{{ i.text }}{% endfor %}")

    assert prompt.render({"items": [{"text": "a"}, {"text": "b"}]})[0].content == "ab"
    with pytest.raises(InvalidInput, match="messages\\[0\\].content") as caught:
        prompt.render({"items": [{"title": "no text"}]})
    assert caught.value.field == "messages[0].content"


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    prompt = one_message_prompt(tmp_path, "x", "{{ x.__class__.__mro__ }}{{ x.append(1) }}")

    with pytest.raises(InvalidInput):
        prompt.render({"x": []})


def test_shipped_rag_prompt_numbers_passages_and_states_the_rules() -> None:
    from stratus.config import PROJECT_ROOT

    prompt = load_file(PROJECT_ROOT / "prompts" / "rag-answer" / "1.yaml")
    passages = [
        {"number": 1, "title": "Webhooks", "source_key": "docs/webhooks.md", "text": "Verify the signature."},
        {"number": 2, "title": None, "source_key": "docs/limits.md", "text": "Retry after the delay."},
    ]

    system, user = prompt.render({"question": "How do I verify a webhook?", "passages": passages})

    assert prompt.model == "fast" and set(prompt.variables) == {"question", "passages"}
    assert "[1] Webhooks (docs/webhooks.md)\nVerify the signature." in user.text()
    assert "[2] docs/limits.md\nRetry after the delay." in user.text()
    assert user.text().endswith("Question: How do I verify a webhook?")
    assert "[1]" in system.text() and "cannot answer" in system.text()
    follow_up = prompt.render({"question": "And the limits?", "passages": passages},
                              [Message(role="user", content="Webhooks?"), Message(role="assistant", content="[1]")])
    assert [m.role for m in follow_up] == ["system", "user", "assistant", "user"]


def test_shipped_chat_prompt_is_a_system_message_then_the_conversation() -> None:
    from stratus.config import PROJECT_ROOT

    prompt = load_file(PROJECT_ROOT / "prompts" / "chat" / "1.yaml")
    conversation = [Message(role="user", content="What is RAG?")]

    messages = prompt.render({}, conversation)

    assert [m.role for m in messages] == ["system", "user"]
    assert messages[1] == conversation[0]
