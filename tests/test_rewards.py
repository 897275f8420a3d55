import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depthlm.errors import DepthLMError
from depthlm.parsing import parse_distance
from depthlm.prompts import TEMPLATES, get_template
from depthlm.rewards import (
    ERROR_CAP,
    REWARDS,
    completion_text,
    delta1_reward,
    format_reward,
    get_rewards,
    neg_abs_rel_reward,
    neg_l1_reward,
)

REFERENCE_TARGET = get_template("reference").format_answer(3.42)

# Parsing takes microseconds; on a loaded shared machine a timing deadline would only add flakes.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_messages(text):
    return [{"role": "assistant", "content": text}]


def call_like_trl(func, completions, depth, template=None, logged=None):
    """The keyword arguments GRPOTrainer._calculate_rewards passes (trl 1.16), plus dataset columns."""
    n = len(completions)
    columns = {"depth": depth, "id": [f"row{i}" for i in range(n)], "image": [None] * n}
    if template is not None:
        columns["template"] = template
    metrics = logged if logged is not None else {}
    return func(
        prompts=[[{"role": "user", "content": "How far is the point?"}]] * n,
        completions=completions,
        completion_ids=[[1, 2, 3]] * n,
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
        **columns,
    )


def test_registry_names():
    assert set(REWARDS) == {"neg_l1", "neg_abs_rel", "delta1", "format", "task"}
    assert get_rewards(["delta1", "format"]) == [delta1_reward, format_reward]
    with pytest.raises(DepthLMError, match="unknown reward 'accuracy'; known: neg_l1"):
        get_rewards(["delta1", "accuracy"])


def test_completion_text_handles_strings_messages_and_parts():
    assert completion_text("3 m") == "3 m"
    assert completion_text(as_messages("3 m")) == "3 m"
    parts = [
        {"role": "assistant", "content": [{"type": "text", "text": "3"}, {"type": "text", "text": " m"}]}
    ]
    assert completion_text(parts) == "3 m"
    assert completion_text([{"role": "assistant", "content": None}]) == ""


ANSWERS = [REFERENCE_TARGET, "2 m", "about 300 cm", "1000 m", "no idea", "-3.42 m", "0 m"]
GT = 3.0


@pytest.mark.parametrize("conversational", [True, False])
def test_depth_rewards_values(conversational):
    completions = [as_messages(a) if conversational else a for a in ANSWERS]
    depth = [GT] * len(ANSWERS)
    logged = {}
    l1 = call_like_trl(neg_l1_reward, completions, depth, logged=logged)
    rel = call_like_trl(neg_abs_rel_reward, completions, depth)
    d1 = call_like_trl(delta1_reward, completions, depth)
    floor = -ERROR_CAP * GT
    assert l1 == pytest.approx([-0.42, -1.0, 0.0, floor, floor, floor, floor])
    assert rel == pytest.approx([-0.14, -1 / 3, 0.0, -ERROR_CAP, -ERROR_CAP, -ERROR_CAP, -ERROR_CAP])
    assert d1 == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert logged == {"parse_failure_rate": [pytest.approx(3 / 7)]}
    assert all(type(r) is float for r in l1 + rel + d1)


def test_neg_l1_uses_each_rows_depth():
    assert neg_l1_reward(["1 m", "1 m"], depth=[2.0, 0.5]) == pytest.approx([-1.0, -0.5])


def test_reference_negative_answer_gets_worst_reward():
    # the reference scored -g as a delta1 hit; here it is unparseable: the floor everywhere
    assert delta1_reward(["-3 m"], depth=[3.0]) == [0.0]
    assert neg_abs_rel_reward(["-3 m"], depth=[3.0]) == [-ERROR_CAP]


@PROPERTY
@given(text=st.text(max_size=40), depth=st.floats(0.05, 200.0))
def test_rewards_are_bounded(text, depth):
    (l1,) = neg_l1_reward([text], depth=[depth])
    (rel,) = neg_abs_rel_reward([text], depth=[depth])
    (d1,) = delta1_reward([text], depth=[depth])
    assert -ERROR_CAP * depth <= l1 <= 0 and -ERROR_CAP <= rel <= 0 and d1 in (0.0, 1.0)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_format_reward_with_template_column(name):
    good = TEMPLATES[name].format_answer(12.5)
    others = sorted({t.format_answer(12.5) for t in TEMPLATES.values()} - {good})
    texts = [good, good + "\n", "I think it is 12.5 m, maybe.", *others]
    rewards = call_like_trl(
        format_reward, [as_messages(t) for t in texts], [12.5] * len(texts), [name] * len(texts)
    )
    assert rewards == [1.0, 1.0, 0.0] + [0.0] * len(others)


def test_format_reward_without_template_column_asks_for_a_number():
    texts = ["12.50", "about 3 m", "no idea", "-1 m"]
    assert call_like_trl(format_reward, texts, [1.0] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert call_like_trl(format_reward, texts, [1.0] * 4, ["number", None, None, None]) == [
        1.0,
        1.0,
        0.0,
        0.0,
    ]


def test_format_reward_unknown_template_is_a_clear_error():
    with pytest.raises(DepthLMError, match="unknown prompt template 'nope'"):
        format_reward(["3.42"], template=["nope"])


def test_missing_or_bad_depth_column_is_a_clear_error():
    with pytest.raises(DepthLMError, match="needs a 'depth' column"):
        neg_l1_reward(["3 m"], prompts=["p"])
    with pytest.raises(DepthLMError, match="row 1 has depth -1.0"):
        delta1_reward(["3 m", "3 m"], depth=[3.0, -1.0])
    with pytest.raises(DepthLMError, match="row 0 has depth"):
        delta1_reward(["3 m"], depth=[[3.0]])
    with pytest.raises(DepthLMError, match="2 completions but 1 values in column 'depth'"):
        neg_abs_rel_reward(["3 m", "3 m"], depth=[3.0])


@pytest.mark.slow  # about 16 s, mostly importing trl and building the model
def test_grpo_trainer_calls_the_rewards(tmp_path, monkeypatch):
    """One real GRPO step with a tiny random model: TRL passes conversational completions and
    the depth/template columns, and logs our rewards and parse-failure rate."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from depthlm.tiny import build_tiny_model

    calls = []

    def recorded(func):
        def reward(**kwargs):
            rewards = func(**kwargs)
            calls.append((func, kwargs, rewards))
            return rewards

        reward.__name__ = func.__name__
        return reward

    model = build_tiny_model("qwen2_5_vl", tmp_path / "model", size="nano")
    question = get_template("plain").format_question(marker="red arrow", x=1, y=1, width=8, height=8)
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": question}], "depth": 7.25, "template": "plain"}] * 2
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
    )
    # the depth rewards (the task reward reads task/truth columns: tests/test_tasks_e2e.py runs it in GRPO)
    funcs = get_rewards([name for name in REWARDS if name != "task"])
    trainer = GRPOTrainer(
        model=str(model), reward_funcs=[recorded(f) for f in funcs], args=args, train_dataset=dataset
    )
    trainer.train()

    assert [func for func, _, _ in calls] == funcs
    for _func, kwargs, rewards in calls:
        assert {"prompts", "completions", "completion_ids", "trainer_state", "log_metric"} <= set(kwargs)
        assert kwargs["depth"] == [7.25] * 4 and kwargs["template"] == ["plain"] * 4
        assert all(
            c[0]["role"] == "assistant" and isinstance(c[0]["content"], str) for c in kwargs["completions"]
        )
        assert len(rewards) == 4
    logs = trainer.state.log_history[0]
    for func, _, rewards in calls:
        assert logs[f"rewards/{func.__name__}/mean"] == pytest.approx(sum(rewards) / 4, abs=1e-5)
    texts = [completion_text(c) for c in calls[0][1]["completions"]]
    assert logs["parse_failure_rate"] == pytest.approx(sum(parse_distance(t) is None for t in texts) / 4)
