"""Tests of tricks/registry.py: what the callbacks register, and parse_spec's typed options and error sentences."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tricks import callbacks, registry
from tricks.catalog import all_tricks, build, get_trick, parse_spec
from tricks.registry import Param, TrickError, register

CALLBACKS = ("BnFreeze", "ClipGradValue", "GradientClip", "L1Penalty", "ExpLRDecay", "WeightDecayFrom",
             "DivergenceGuard", "ThroughputRecorder", "GradNormRecorder")


def test_every_callback_is_listed_with_its_parameters_and_description():
    listed = {t.name: t for t in all_tricks()}
    for name in CALLBACKS:
        trick = listed[name]
        cls = getattr(callbacks, name)
        assert trick.kind == "callback" and trick.factory is cls
        assert trick.description and "\n" not in trick.description
        sig = inspect.signature(cls.__init__)
        expected = [(p.name, p.default) for p in list(sig.parameters.values())[1:]]
        assert [(p.name, p.default) for p in trick.params] == expected
        assert all(not p.required for p in trick.params)
    assert listed["BnFreeze"].description == inspect.getdoc(callbacks.BnFreeze).splitlines()[0]


def test_callback_parameters_carry_their_types():
    types = {(t.name, p.name): p.type for t in all_tricks() for p in t.params}
    assert types[("BnFreeze", "affine")] is bool
    assert types[("ClipGradValue", "clip")] is float
    assert types[("WeightDecayFrom", "start_epoch")] is int
    assert types[("WeightDecayFrom", "wd")] is float
    assert types[("GradNormRecorder", "every")] is int
    assert types[("GradientClip", "max_norm")] is float


def test_all_tricks_are_sorted_by_kind_then_name():
    listed = all_tricks()
    assert [(t.kind, t.name.lower()) for t in listed] == sorted((t.kind, t.name.lower()) for t in listed)


@pytest.mark.parametrize("text, expected", [
    ("ExpLRDecay:gamma=0.5", ("ExpLRDecay", {"gamma": 0.5})),
    ("ExpLRDecay", ("ExpLRDecay", {})),
    ("ExpLRDecay:", ("ExpLRDecay", {})),
    ("WeightDecayFrom:wd=1e-4,start_epoch=3", ("WeightDecayFrom", {"wd": 1e-4, "start_epoch": 3})),
    (" WeightDecayFrom: wd = 2 , start_epoch = 0 ", ("WeightDecayFrom", {"wd": 2.0, "start_epoch": 0})),
    ("BnFreeze:affine=yes", ("BnFreeze", {"affine": True})),
    ("BnFreeze:affine=0", ("BnFreeze", {"affine": False})),
    ("bnfreeze:affine=True", ("BnFreeze", {"affine": True})),  # names are matched case-insensitively
    ("GradientClip:max_norm=1", ("GradientClip", {"max_norm": 1.0})),
])
def test_parse_spec_converts_options_to_the_parameter_types(text, expected):
    name, kwargs = parse_spec(text)
    assert (name, kwargs) == expected
    assert all(type(v) is type(expected[1][k]) for k, v in kwargs.items())


def test_parse_spec_ignores_spaces_between_name_and_colon():
    assert parse_spec("WeightDecayFrom :start_epoch=1") == ("WeightDecayFrom", {"start_epoch": 1})


@pytest.mark.parametrize("text, message", [
    ("ExpLRDecay:gamma=abc", "option ExpLRDecay:gamma=abc is malformed: gamma takes a float"),
    ("WeightDecayFrom:start_epoch=1.5", "option WeightDecayFrom:start_epoch=1.5 is malformed: start_epoch takes a int"),
    ("BnFreeze:affine=maybe", "option BnFreeze:affine=maybe is malformed: affine takes a bool"),
    ("ExpLRDecay:gamma", "option 'ExpLRDecay:gamma' is malformed: 'gamma' is not of the form key=value"),
    ("ExpLRDecay:=0.5", "option 'ExpLRDecay:=0.5' is malformed: '=0.5' is not of the form key=value"),
    (":gamma=0.5", "option ':gamma=0.5' is malformed: it needs a trick name before any ':'"),
    ("ExpLRDecay:gamma=0.5,gamma=0.6", "option 'ExpLRDecay:gamma=0.5,gamma=0.6' is malformed: 'gamma' is given twice"),
])
def test_parse_spec_rejects_malformed_specs_in_one_sentence(text, message):
    with pytest.raises(TrickError) as e:
        parse_spec(text)
    assert str(e.value) == message


def test_parse_spec_names_the_known_parameters_of_an_unknown_one():
    with pytest.raises(TrickError) as e:
        parse_spec("ExpLRDecay:gama=0.5")
    assert str(e.value) == "trick 'ExpLRDecay' has no parameter 'gama' (its parameters: gamma)"
    with pytest.raises(TrickError, match="its parameters: wd, start_epoch"):
        parse_spec("WeightDecayFrom:start=1")


def test_unknown_trick_name_suggests_the_closest():
    with pytest.raises(TrickError) as e:
        parse_spec("BnFreez")
    assert str(e.value) == "unknown trick 'BnFreez'; did you mean BnFreeze?"
    with pytest.raises(TrickError, match="did you mean ClipGradValue"):
        get_trick("ClipGradValues")


def test_unknown_trick_without_a_close_name_points_to_the_list():
    with pytest.raises(TrickError, match=r"unknown trick 'qqqqqq'; `python -m tricks.apply --list` lists them"):
        get_trick("qqqqqq")


def test_build_makes_the_callback_with_typed_arguments():
    cb = build("ClipGradValue:clip=0.25")
    assert isinstance(cb, callbacks.ClipGradValue) and cb.clip == 0.25
    cb = build("WeightDecayFrom:start_epoch=4")
    assert (cb.wd, cb.start_epoch) == (1e-4, 4)


def test_trick_build_rejects_an_unknown_keyword():
    with pytest.raises(TrickError, match="has no parameter 'gama'"):
        get_trick("ExpLRDecay").build(gama=0.5)


def test_a_name_registered_twice_for_different_objects_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register(name="BnFreeze")(type("Other", (), {"__init__": lambda self: None}))
    register()(callbacks.BnFreeze)  # registering the same class again (a module reload) is fine


@settings(max_examples=60, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_float_options_round_trip_exactly_or_are_refused_outside_their_range(x):
    if x > 0:
        assert parse_spec(f"ExpLRDecay:gamma={x!r}") == ("ExpLRDecay", {"gamma": x})
    else:
        with pytest.raises(TrickError, match=r"gamma takes a value in \(0, inf\)"):
            parse_spec(f"ExpLRDecay:gamma={x!r}")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 10**12))
def test_int_options_round_trip_exactly(n):
    assert parse_spec(f"WeightDecayFrom:start_epoch={n}") == ("WeightDecayFrom", {"start_epoch": n})


@pytest.mark.parametrize("text, message", [
    ("dropout_conv:p=2", "option dropout_conv:p=2 is out of range: p takes a value in (0, 1)"),
    ("dropout_dense:p=1", "option dropout_dense:p=1 is out of range: p takes a value in (0, 1)"),
    ("dropout_both:p=-0.1", "option dropout_both:p=-0.1 is out of range: p takes a value in (0, 1)"),
    ("dropout_conv:p=nan", "option dropout_conv:p=nan is out of range: p takes a value in (0, 1)"),
    ("WeightDecayFrom:start_epoch=-1", "start_epoch takes a value in [0, inf)"),
    ("GradNormRecorder:every=0", "every takes a value in [1, inf)"),
    ("ClipGradValue:clip=0", "clip takes a value in (0, inf)"),
    ("kmeans:patch=33", "patch takes a value in [1, 32]"),
])
def test_an_option_outside_its_declared_range_is_refused_when_parsed(text, message):
    pytest.importorskip("tricks.transforms")
    with pytest.raises(TrickError) as e:
        parse_spec(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_ends_of_a_range_are_open_or_closed_as_declared():
    pytest.importorskip("tricks.transforms")
    assert parse_spec("dropout_conv:p=0.999") == ("dropout_conv", {"p": 0.999})
    assert parse_spec("WeightDecayFrom:start_epoch=0") == ("WeightDecayFrom", {"start_epoch": 0})
    assert parse_spec("kmeans:patch=32")[1] == {"patch": 32}


def test_every_numeric_parameter_of_every_trick_declares_its_range():
    pytest.importorskip("tricks.transforms")
    missing = [f"{t.name}:{p.name}" for t in all_tricks() for p in t.params
               if p.type in (int, float) and p.range is None]
    assert missing == []


def test_a_range_is_declared_at_registration_and_must_name_a_parameter():
    def scaled(model, *, factor: float = 2.0):
        return model

    register(name="test_scaled", kind="transform", ranges={"factor": "[1, 10]"})(scaled)
    try:
        assert str(get_trick("test_scaled").param("factor").range) == "[1, 10]"
        assert get_trick("test_scaled").param("factor").describe() == "factor: float in [1, 10] = 2.0"
        with pytest.raises(TrickError, match=r"factor takes a value in \[1, 10\]"):
            parse_spec("test_scaled:factor=11")
        with pytest.raises(ValueError, match="declares a range for size, which it does not take"):
            register(name="test_scaled2", kind="transform", ranges={"size": "[1, 2]"})(scaled)
    finally:
        registry._REGISTRY.pop("test_scaled", None)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("BnFreez:aifn=,1.0xyClipGradVluet -")), max_size=30))
def test_parse_spec_returns_or_raises_trick_error_and_nothing_else(text):
    try:
        name, kwargs = parse_spec(text)
    except TrickError as e:
        assert str(e) and "\n" not in str(e)
    else:
        trick = get_trick(name)
        assert set(kwargs) <= {p.name for p in trick.params}


def test_param_describe_shows_type_and_default():
    assert Param("clip", float, 0.1).describe() == "clip: float = 0.1"
    assert Param("n", int, None, required=True).describe() == "n: int"
