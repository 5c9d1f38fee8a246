"""Critical flags: per synthetic profile with evidence, the surgery window, priority, the drug table."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mynabox.summary.flags import (
    DRUG_FLAGS,
    DrugTableError,
    FlagCode,
    classify,
    derive_flags,
    drug_classes,
    flags_json,
    parse_drug_classes,
)
from mynabox.summary.model import Summary, Surgery
from mynabox_testkit import patients

TODAY = date(2026, 11, 25)


def summary(key: str, today: date = TODAY) -> Summary:
    s = patients.summary_for(patients.patient(key), today)
    assert s is not None
    return s


EXPECTED = {
    "healthy": [],
    "warfarin-elderly": [FlagCode.ANTICOAGULANT],
    "dialysis": [FlagCode.ANTIPLATELET, FlagCode.DIALYSIS, FlagCode.SURGERY],
    "recent-surgery": [FlagCode.SURGERY],
    "allergy": [FlagCode.ALLERGY],
    "insulin-diabetic": [FlagCode.INSULIN, FlagCode.HYPOGLYCAEMIC],
}


@pytest.mark.parametrize(("key", "codes"), EXPECTED.items())
def test_flags_of_each_profile(key: str, codes: list[FlagCode]) -> None:
    assert [f.code for f in derive_flags(summary(key), today=TODAY)] == codes


def test_every_registered_profile_is_covered() -> None:
    assert {p.key for p in patients.PATIENTS if p.registered} == set(EXPECTED)


def flag(key: str, code: FlagCode) -> tuple[str, tuple[str, ...]]:
    found = [f for f in derive_flags(summary(key), today=TODAY) if f.code == code]
    assert len(found) == 1
    return found[0].label, found[0].evidence


def test_warfarin_evidence_names_the_drug_once_with_its_latest_date() -> None:
    label, evidence = flag("warfarin-elderly", FlagCode.ANTICOAGULANT)
    assert label == "抗凝固薬"
    latest = (TODAY - timedelta(days=28)).isoformat()
    assert evidence == (f"ワルファリンK錠1mg「F」 ({latest})",)


def test_heparinoid_skin_cream_is_no_anticoagulant() -> None:
    # ヒルドイド is in the elderly patient's list, inside YJ class 333, and must not appear as evidence.
    s = summary("warfarin-elderly")
    assert any("ヒルドイド" in m.drug_name for m in s.medications)
    _, evidence = flag("warfarin-elderly", FlagCode.ANTICOAGULANT)
    assert not any("ヒルドイド" in e for e in evidence)


def test_surgery_older_than_five_years_is_not_flagged() -> None:
    s = summary("warfarin-elderly")
    assert s.surgeries  # the cataract operation six years ago is in the record
    assert FlagCode.SURGERY not in {f.code for f in derive_flags(s, today=TODAY)}


def test_dialysis_evidence() -> None:
    label, evidence = flag("dialysis", FlagCode.DIALYSIS)
    assert label == "透析"
    count = len(summary("dialysis").dialyses)
    assert 36 <= count <= 40  # three a week for 90 days
    assert len(evidence) == 1
    assert evidence[0].startswith("血液透析 あおば腎クリニック")
    assert f"{count}回" in evidence[0]


def test_insulin_and_other_hypoglycaemics_are_separate_flags() -> None:
    label, evidence = flag("insulin-diabetic", FlagCode.INSULIN)
    assert label == "インスリン"
    assert any("グラルギン" in e for e in evidence) and any("アスパルト" in e for e in evidence)
    label, evidence = flag("insulin-diabetic", FlagCode.HYPOGLYCAEMIC)
    assert label == "血糖降下薬"
    assert sorted(e.split(" (")[0] for e in evidence) == [
        "ジャヌビア錠50mg",
        "メトホルミン塩酸塩錠500mgMT「トーワ」",
    ]


def test_allergy_evidence_and_absent_section() -> None:
    label, evidence = flag("allergy", FlagCode.ALLERGY)
    assert label == "アレルギー"
    assert evidence == ("ペニシリン系抗菌薬 (薬剤: 全身の発疹)", "卵 (食物: じんましん)")
    # Section not available (None) and section empty both raise no flag.
    assert summary("warfarin-elderly").allergies is None
    assert summary("healthy").allergies is not None


def test_recent_surgery_evidence() -> None:
    label, evidence = flag("recent-surgery", FlagCode.SURGERY)
    assert label == "手術歴"
    assert evidence == (f"腹腔鏡下胆嚢摘出術 東都中央病院 ({(TODAY - timedelta(days=40)).isoformat()})",)


@pytest.mark.parametrize(
    ("today", "surgery_day", "flagged"),
    [
        (date(2026, 11, 25), date(2021, 11, 25), True),  # exactly five years
        (date(2026, 11, 25), date(2021, 11, 24), False),
        (date(2028, 2, 29), date(2023, 2, 28), True),  # leap day: the window starts on 28 February
        (date(2028, 2, 29), date(2023, 2, 27), False),
    ],
)
def test_surgery_window_boundary(today: date, surgery_day: date, flagged: bool) -> None:
    s = dataclasses.replace(summary("healthy"), surgeries=(Surgery(surgery_day, "虫垂切除術", "A病院"),))
    assert (FlagCode.SURGERY in {f.code for f in derive_flags(s, today=today)}) is flagged


def test_flags_come_in_priority_order() -> None:
    # One patient with everything: the order is FlagCode's declaration order.
    parts = [summary(k) for k in EXPECTED]
    merged = dataclasses.replace(
        parts[0],
        medications=tuple(m for p in parts for m in p.medications),
        dialyses=summary("dialysis").dialyses,
        surgeries=summary("recent-surgery").surgeries,
        allergies=summary("allergy").allergies,
    )
    codes = [f.code for f in derive_flags(merged, today=TODAY)]
    assert codes == list(FlagCode)
    assert [f.label for f in derive_flags(merged, today=TODAY)] == [
        "抗凝固薬",
        "抗血小板薬",
        "インスリン",
        "血糖降下薬",
        "透析",
        "アレルギー",
        "手術歴",
    ]


# --- the classification table ---------------------------------------------------------------------------

A, P, INS, H = FlagCode.ANTICOAGULANT, FlagCode.ANTIPLATELET, FlagCode.INSULIN, FlagCode.HYPOGLYCAEMIC

CLASSIFIED = [
    ("ワルファリンK錠1mg「F」", "3332001F1091", {A}),
    ("ワーファリン錠1mg", None, {A}),
    ("ﾜｰﾌｧﾘﾝ錠1mg", None, {A}),  # half-width katakana, NFKC
    ("エリキュース錠5mg", "3339004F2025", {A}),
    ("リクシアナOD錠30mg", None, {A}),
    ("イグザレルト錠15mg", None, {A}),
    ("プラザキサカプセル110mg", None, {A}),
    ("ヘパリンNa注5千単位/5mL", None, {A}),
    ("ヒルドイドソフト軟膏0.3%", "3339950M1137", set()),
    ("ヘパリン類似物質油性クリーム0.3%「日医工」", None, set()),
    ("バイアスピリン錠100mg", "3399007H1021", {P}),
    ("プラビックス錠75mg", "3399008F2021", {P}),
    ("クロピドグレル錠75mg「SANIK」", None, {P}),
    ("エフィエント錠3.75mg", "3399009F1020", {P}),
    ("コンプラビン配合錠", "3399101F1021", {P}),
    ("インスリン グラルギンBS注ミリオペン「リリー」", "2492420G1024", {INS}),
    ("ランタスXR注ソロスター", "2492416G3020", {INS}),
    ("トレシーバ注フレックスタッチ", None, {INS}),
    ("メトグルコ錠250mg", None, {H}),
    ("ジャヌビア錠50mg", "3969010F2030", {H}),
    ("ジャディアンス錠10mg", None, {H}),
    ("オゼンピック皮下注2mg", None, {H}),
    ("アムロジピン錠5mg「サワイ」", "2171022F2144", set()),
    ("カロナール錠200", "1141007F1063", set()),
]


@pytest.mark.parametrize(("name", "yj", "codes"), CLASSIFIED, ids=[c[0] for c in CLASSIFIED])
def test_classification(name: str, yj: str | None, codes: set[FlagCode]) -> None:
    assert classify(name, yj) == codes


def test_packaged_table_is_sane() -> None:
    table = drug_classes()
    assert sorted(c.code.value for c in table) == sorted(c.value for c in DRUG_FLAGS)
    for cls in table:
        assert cls.label and cls.names
        assert all(p.isdigit() for p in cls.yj_prefixes + cls.exclude_yj_prefixes)
        # An exclusion never hides a whole class.
        assert not any(x in cls.yj_prefixes for x in cls.exclude_yj_prefixes)
    doc = json.loads(resources.files("mynabox").joinpath("data", "drug_classes.json").read_text("utf-8"))
    assert doc["sources"], "the table documents where its codes come from"


def _table(**changes: object) -> str:
    doc = json.loads(resources.files("mynabox").joinpath("data", "drug_classes.json").read_text("utf-8"))
    doc["classes"][0].update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"version": 2, "classes": []}),
        json.dumps({"version": 1, "classes": []}),
        _table(code="dialysis"),
        _table(code="nonsense"),
        _table(yj_prefixes=["33A"]),
        _table(names="ワルファリン"),
        _table(label=""),
        _table(unexpected=1),
    ],
)
def test_malformed_tables_are_refused(text: str) -> None:
    with pytest.raises(DrugTableError):
        parse_drug_classes(text)


# --- invisible characters and other spellings (issue 10, item 8: a patient-safety defect) ----------------

# What a record may carry inside a name and not show: format characters (ZWSP, soft hyphen, word joiner,
# BOM, bidi overrides …), line/paragraph separators, spaces of every width, and default-ignorables filed
# under other categories. Cc is refused by the summary reader but classify() may be called on any text.
INVISIBLE = st.one_of(
    st.characters(categories=["Cf", "Zl", "Zp", "Zs", "Cc"]),
    st.sampled_from(["\u034f", "\u115f", "\u3164", "\ufe0f", "\U000e0100", "\u180b", "\ufe00"]),
)
FLAGGED_NAMES = [(c.code, n) for c in drug_classes() for n in c.names]


def _insert(name: str, chars: list[str], positions: list[int]) -> str:
    out = name
    for ch, pos in zip(chars, positions, strict=True):
        i = pos % (len(out) + 1)
        out = out[:i] + ch + out[i:]
    return out


@settings(max_examples=40, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize(("code", "name"), FLAGGED_NAMES, ids=[n for _, n in FLAGGED_NAMES])
def test_invisible_characters_anywhere_in_a_flagged_name_keep_the_flag(
    code: FlagCode, name: str, data: st.DataObject
) -> None:
    chars = data.draw(st.lists(INVISIBLE, min_size=1, max_size=3))
    positions = data.draw(st.lists(st.integers(0, 64), min_size=len(chars), max_size=len(chars)))
    tampered = _insert(f"{name}錠1mg", chars, positions)
    assert code in classify(tampered, None), ascii(tampered)


REPORTED = ["\u200b", "\u00ad", "\u2060", "\ufeff", "\u202e", "\u2028", "\u2029", "\u180e"]


@pytest.mark.parametrize("ch", REPORTED)
def test_each_reported_character_inside_warfarin_keeps_the_flag(ch: str) -> None:
    # The attack's own inputs, every position inside the name.
    for i in range(1, len("ワルファリン")):
        assert classify("ワルファリン"[:i] + ch + "ワルファリン"[i:] + "K錠1mg", None) == {A}


@pytest.mark.parametrize(
    "name",
    [
        "わるふぁりん錠1mg",  # hiragana
        "ﾜﾙﾌｧﾘﾝK錠1mg",  # half-width katakana
        "ワ-ファリン錠1mg",  # ASCII hyphen for ー
        "ワ\u2015ファリン錠1mg",  # horizontal bar
        "ワ\u2212ファリン錠1mg",  # minus sign
        "ワ\u3000ルファリン",  # ideographic space
        "エリキュ\u200bース",
        "ワルファリ\u200b\u30f3",
        "ワルフ\u200b\u30a1リン",
        "ワルファリン".replace("フ", "ﾌ\u200b"),
    ],
)
def test_other_spellings_of_an_anticoagulant_keep_the_flag(name: str) -> None:
    assert A in classify(name, None)


def test_split_voicing_mark_still_composes() -> None:
    # ダ written as タ + combining dakuten with a ZWSP between: dropped first, then composed by NFKC.
    assert A in classify("エドキサハ\u200b\u3099ン", None)
    assert A in classify("ダビガトラン".replace("ダ", "タ\u2060\u3099"), None)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_excluded_heparinoid_stays_excluded_with_invisible_characters(data: st.DataObject) -> None:
    excluded = ["ヘパリン類似物質油性クリーム", "ヒルドイドソフト軟膏0.3%", "ビーソフテンローション"]
    name = data.draw(st.sampled_from(excluded))
    chars = data.draw(st.lists(INVISIBLE, min_size=1, max_size=3))
    positions = data.draw(st.lists(st.integers(0, 64), min_size=len(chars), max_size=len(chars)))
    assert classify(_insert(name, chars, positions), None) == set()


def test_invisible_character_in_a_service_summary_still_raises_the_flag_on_the_oled_list() -> None:
    # End to end through the summary reader: the JSON the service sends, with U+200B inside the name.
    doc = summary("warfarin-elderly").to_json()
    for m in doc["medications"]:
        if "ワルファリン" in m["drug_name"]:
            m["drug_name"] = m["drug_name"].replace("ワル", "ワ\u200bル")
            m["yj_code"] = None
    for d in doc["dispensings"]:
        if "ワルファリン" in d["drug_name"]:
            d["drug_name"] = d["drug_name"].replace("ファ", "フ\u00ada")
            d["yj_code"] = None
    parsed = Summary.from_json(json.loads(json.dumps(doc)))
    assert FlagCode.ANTICOAGULANT in [f.code for f in derive_flags(parsed, today=TODAY)]


def test_each_flag_carries_the_items_that_raised_it_and_the_oled_text_is_theirs() -> None:
    """One derivation: the evidence the OLED shows is the text of the items the summary message carries."""
    flags = derive_flags(summary("dialysis"), today=TODAY)
    for f in flags:
        assert f.items and f.evidence == tuple(i.text() for i in f.items)
    drug = next(f for f in flags if f.code is FlagCode.ANTIPLATELET).to_json()
    assert drug["code"] == "antiplatelet" and drug["label"]
    item = drug["items"][0]  # type: ignore[index]
    assert set(item) == {"section", "drug_name", "yj_code", "date"}
    assert item["section"] in {"medications", "dispensings"} and len(item["yj_code"]) == 12
    date.fromisoformat(item["date"])
    dialysis = next(f for f in flags if f.code is FlagCode.DIALYSIS).to_json()["items"][0]  # type: ignore[index]
    assert dialysis["kind"] == "hemodialysis" and dialysis["sessions"] > 1
    surgery = next(f for f in flags if f.code is FlagCode.SURGERY).to_json()["items"][0]  # type: ignore[index]
    assert set(surgery) == {"section", "procedure", "facility", "date"}
    assert flags_json(flags) == [f.to_json() for f in flags]
    json.dumps(flags_json(flags))  # plain JSON
