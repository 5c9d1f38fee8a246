"""Deterministic synthetic patients for the reference service, the demo, the tests and the bench.

Every name, facility and number here is invented. Drugs are real products so that the flag table meets
realistic input; YJ codes of drugs that raise flags are the real ones (see data/drug_classes.json), the
others are shaped like YJ codes but not checked against the drug master.

Dates are stored as "days before today" so that `summary_for(patient, today)` keeps every record inside
its window (受診歴 3 months, 電子処方箋 45 days, 薬剤 3 months, 手術 5 years, 診療 3 months, 透析 3 months)
whatever day the tests run.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta

from mynabox.summary.model import (
    Allergy,
    AllergyCategory,
    AllergySection,
    Contraindication,
    Dialysis,
    DialysisKind,
    Dispensing,
    Medication,
    Patient,
    Sex,
    Summary,
    Surgery,
    Treatment,
    Visit,
)

DISPENSING_WINDOW_DAYS = 45


def card_id_for(patient_key: str) -> str:
    """The opaque CN of a synthetic patient's JPKI user-auth certificate: 23 upper-case characters, like
    real cards' IDs, derived from the key so it is stable across runs."""
    digest = hashlib.sha256(f"mynabox synthetic card {patient_key}".encode()).digest()
    return base64.b32encode(digest).decode("ascii")[:23]


@dataclass(frozen=True)
class _Rx:
    ago: int  # days before today
    drug_name: str
    yj_code: str | None
    dose: str
    days: int
    prescriber: str
    pharmacy: str


@dataclass(frozen=True)
class SyntheticPatient:
    key: str
    profile: str  # what this patient is for, in Japanese
    name: str
    kana: str
    birth_date: date
    sex: Sex
    insurer_number: str
    registered: bool = True  # False: the card is not registered as マイナ保険証
    visits: tuple[tuple[int, str, str, bool], ...] = ()  # (ago, facility, department, inpatient)
    prescriptions: tuple[_Rx, ...] = ()
    surgeries: tuple[tuple[int, str, str], ...] = ()  # (ago, procedure, facility)
    treatments: tuple[tuple[int, str, str], ...] = ()  # (ago, description, facility)
    dialysis: tuple[DialysisKind, str] | None = None  # three sessions a week for 3 months
    checkup_ago: int | None = None
    allergies: AllergySection | None = field(default=None)

    @property
    def card_id(self) -> str:
        """The opaque CN of this patient's JPKI user-auth certificate (made by mynabox_testkit.testca)."""
        return card_id_for(self.key)


def _monthly(
    agos: tuple[int, ...], *items: tuple[str, str | None, str], prescriber: str, pharmacy: str
) -> tuple[_Rx, ...]:
    return tuple(
        _Rx(ago, name, yj, dose, 28, prescriber, pharmacy) for ago in agos for name, yj, dose in items
    )


_TOTO = "東都中央病院"
_SAKURA = "さくら内科クリニック"
_MIDORI = "みどり薬局 本町店"
_AOBA = "あおば腎クリニック"
_HONMACHI = "本町整形外科"

PATIENTS: tuple[SyntheticPatient, ...] = (
    SyntheticPatient(
        key="healthy",
        profile="健康な成人(受診歴わずか、アレルギー記録なし)",
        name="佐藤 健太",
        kana="サトウ ケンタ",
        birth_date=date(1990, 4, 12),
        sex=Sex.MALE,
        insurer_number="06139015",
        visits=((30, _SAKURA, "内科", False),),
        prescriptions=(_Rx(30, "カロナール錠200", "1141007F1063", "1回2錠 発熱時", 5, _SAKURA, _MIDORI),),
        checkup_ago=200,
        allergies=AllergySection((), ()),
    ),
    SyntheticPatient(
        key="warfarin-elderly",
        profile="多剤内服の高齢者(ワルファリン、6年前に白内障手術)",
        name="鈴木 正子",
        kana="スズキ マサコ",
        birth_date=date(1942, 9, 3),
        sex=Sex.FEMALE,
        insurer_number="39132019",
        visits=(
            (84, _TOTO, "循環器内科", False),
            (56, _TOTO, "循環器内科", False),
            (28, _TOTO, "循環器内科", False),
            (20, "本町整形外科", "整形外科", False),
        ),
        prescriptions=(
            *_monthly(
                (84, 56, 28),
                ("ワルファリンK錠1mg「F」", "3332001F1091", "1回2錠 1日1回 朝食後"),
                ("アムロジピン錠5mg「サワイ」", "2171022F2144", "1回1錠 1日1回 朝食後"),
                ("フロセミド錠20mg「NP」", "2139005F1118", "1回1錠 1日1回 朝食後"),
                ("ランソプラゾールOD錠15mg「トーワ」", "2329023F2128", "1回1錠 1日1回 朝食後"),
                ("メコバラミン錠500μg「トーワ」", "3136004F2151", "1回1錠 1日3回 毎食後"),
                ("酸化マグネシウム錠330mg「ケンエー」", "2344009F1043", "1回1錠 1日3回 毎食後"),
                prescriber=_TOTO,
                pharmacy=_MIDORI,
            ),
            # ヘパリン類似物質 sits in the anticoagulant YJ class but must not raise the flag.
            _Rx(20, "ヒルドイドソフト軟膏0.3%", "3339950M1137", "1日2回 下腿に塗布", 14, _HONMACHI, _MIDORI),
            _Rx(
                20,
                "ロキソプロフェンNaテープ100mg「ケミファ」",
                "2649735S2046",
                "1日1回 腰に貼付",
                14,
                _HONMACHI,
                _MIDORI,
            ),
        ),
        surgeries=((6 * 365 + 40, "水晶体再建術(白内障)", "東都眼科クリニック"),),
        treatments=((84, "PT-INR測定", _TOTO), (56, "PT-INR測定", _TOTO), (28, "PT-INR測定", _TOTO)),
        checkup_ago=300,
        allergies=None,
    ),
    SyntheticPatient(
        key="dialysis",
        profile="維持血液透析(週3回)、抗血小板薬、3年前に内シャント造設",
        name="田中 一郎",
        kana="タナカ イチロウ",
        birth_date=date(1958, 1, 20),
        sex=Sex.MALE,
        insurer_number="138016",
        visits=((60, _TOTO, "腎臓内科", False),),
        prescriptions=_monthly(
            (70, 42, 14),
            ("バイアスピリン錠100mg", "3399007H1021", "1回1錠 1日1回 朝食後"),
            ("ホスレノールOD錠250mg", "2190028F2020", "1回1錠 1日3回 毎食直後"),
            ("アムロジピン錠5mg「サワイ」", "2171022F2144", "1回1錠 1日1回 朝食後"),
            prescriber=_AOBA,
            pharmacy="あおば薬局",
        ),
        surgeries=((3 * 365 + 60, "内シャント造設術", _TOTO),),
        treatments=((60, "シャント血管造影", _TOTO),),
        dialysis=(DialysisKind.HEMODIALYSIS, _AOBA),
        checkup_ago=None,
        allergies=AllergySection((), ()),
    ),
    SyntheticPatient(
        key="recent-surgery",
        profile="40日前に腹腔鏡下胆嚢摘出術",
        name="高橋 美咲",
        kana="タカハシ ミサキ",
        birth_date=date(1985, 7, 30),
        sex=Sex.FEMALE,
        insurer_number="06271234",
        visits=((44, _TOTO, "外科", True), (26, _TOTO, "外科", False)),
        prescriptions=(
            _Rx(
                38,
                "ロキソプロフェンNa錠60mg「サワイ」",
                "1149019F1560",
                "1回1錠 1日3回 毎食後",
                7,
                _TOTO,
                "中央薬局",
            ),
            _Rx(
                38,
                "レバミピド錠100mg「トーワ」",
                "2329021F1277",
                "1回1錠 1日3回 毎食後",
                7,
                _TOTO,
                "中央薬局",
            ),
        ),
        surgeries=((40, "腹腔鏡下胆嚢摘出術", _TOTO),),
        treatments=((45, "腹部CT", _TOTO), (26, "創部処置", _TOTO)),
        checkup_ago=400,
        allergies=AllergySection((), ()),
    ),
    SyntheticPatient(
        key="allergy",
        profile="ペニシリン系抗菌薬と卵のアレルギー",
        name="伊藤 陽菜",
        kana="イトウ ヒナ",
        birth_date=date(2001, 2, 14),
        sex=Sex.FEMALE,
        insurer_number="01130012",
        visits=((20, "まちだ皮膚科", "皮膚科", False),),
        prescriptions=(
            _Rx(
                20,
                "フェキソフェナジン塩酸塩錠60mg「サワイ」",
                "4490023F1258",
                "1回1錠 1日2回 朝夕食後",
                14,
                "まちだ皮膚科",
                _MIDORI,
            ),
        ),
        checkup_ago=150,
        allergies=AllergySection(
            allergies=(
                Allergy("ペニシリン系抗菌薬", AllergyCategory.DRUG, "全身の発疹"),
                Allergy("卵", AllergyCategory.FOOD, "じんましん"),
            ),
            contraindications=(Contraindication("アモキシシリン", "ペニシリン系抗菌薬アレルギー"),),
        ),
    ),
    SyntheticPatient(
        key="insulin-diabetic",
        profile="2型糖尿病(インスリン グラルギン+アスパルト、メトホルミン、DPP-4阻害薬)",
        name="渡辺 誠",
        kana="ワタナベ マコト",
        birth_date=date(1966, 11, 5),
        sex=Sex.MALE,
        insurer_number="06131111",
        visits=(
            (77, _TOTO, "糖尿病内科", False),
            (49, _TOTO, "糖尿病内科", False),
            (21, _TOTO, "糖尿病内科", False),
        ),
        prescriptions=_monthly(
            (77, 49, 21),
            ("インスリン グラルギンBS注ミリオペン「リリー」", "2492420G1024", "1日1回 就寝前 12単位"),
            ("インスリン アスパルトBS注ソロスター NR「サノフィ」", "2492423G1028", "毎食直前 各4単位"),
            ("メトホルミン塩酸塩錠500mgMT「トーワ」", "3962002F2165", "1回1錠 1日2回 朝夕食後"),
            ("ジャヌビア錠50mg", "3969010F2030", "1回1錠 1日1回 朝食後"),
            prescriber=_TOTO,
            pharmacy=_MIDORI,
        ),
        treatments=((77, "HbA1c測定", _TOTO), (21, "HbA1c測定", _TOTO)),
        checkup_ago=250,
        allergies=None,
    ),
    SyntheticPatient(
        key="not-registered",
        profile="マイナ保険証の利用登録なし",
        name="小林 翔",
        kana="コバヤシ ショウ",
        birth_date=date(1995, 5, 5),
        sex=Sex.MALE,
        insurer_number="06130505",
        registered=False,
    ),
)

# Not in PATIENTS (which every tap-all-patients test and bench walks): a summary too large to be sealed
# within payload.envelope.MAX_MESSAGE_BYTES (about 612 kB of JSON, near the schema's limits of 1000 items
# and 200 characters a text), so the box must send the card record instead. Still schema-valid.
_LONG_DOSE = (
    "1回1錠 1日3回 毎食後 " + "（服薬指導: 飲み忘れ時は次回分から再開し二回分を一度に飲まないこと）" * 2
)[:59]
OVERSIZE = SyntheticPatient(
    key="oversize-history",
    profile="記録が極端に多い患者(封緘後の上限を超えるサマリー)",
    name="中村 次郎",
    kana="ナカムラ ジロウ",
    birth_date=date(1950, 2, 14),
    sex=Sex.MALE,
    insurer_number="06131402",
    visits=tuple((1 + i % 90, _TOTO, "総合診療科", False) for i in range(300)),
    prescriptions=tuple(
        _Rx(1 + i % 90, "アムロジピン錠5mg「サワイ」", "2171022F2144", _LONG_DOSE, 28, _SAKURA, _MIDORI)
        for i in range(1000)
    ),
    treatments=tuple((1 + i % 90, "血液検査・心電図・胸部X線撮影・尿検査", _TOTO) for i in range(300)),
    allergies=AllergySection((), ()),
)

_BY_KEY = {p.key: p for p in (*PATIENTS, OVERSIZE)}


def patient(key: str) -> SyntheticPatient:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no synthetic patient {key!r}; known: {sorted(_BY_KEY)}") from None


def by_card_id(card_id: str) -> SyntheticPatient | None:
    return next((p for p in (*PATIENTS, OVERSIZE) if p.card_id == card_id), None)


def _dialysis_days(today: date) -> list[date]:
    # Monday, Wednesday, Friday over the last 90 days.
    days = (today - timedelta(days=ago) for ago in range(1, 91))
    return sorted(d for d in days if d.weekday() in (0, 2, 4))


def summary_for(p: SyntheticPatient, today: date) -> Summary | None:
    """The patient's summary as the service would return it on `today`; None when not registered."""
    if not p.registered:
        return None

    def day(ago: int) -> date:
        return today - timedelta(days=ago)

    meds = tuple(
        Medication(day(r.ago), r.drug_name, r.yj_code, r.dose, r.days, r.prescriber, r.pharmacy)
        for r in p.prescriptions
    )
    dispensed = tuple(
        Dispensing(day(r.ago), r.drug_name, r.yj_code, r.dose, r.days, r.pharmacy)
        for r in p.prescriptions
        if r.ago <= DISPENSING_WINDOW_DAYS
    )
    dialyses: tuple[Dialysis, ...] = ()
    if p.dialysis is not None:
        kind, facility = p.dialysis
        dialyses = tuple(Dialysis(d, kind, facility) for d in _dialysis_days(today))
    return Summary(
        as_of=today,
        patient=Patient(p.name, p.kana, p.birth_date, p.sex, p.insurer_number),
        visits=tuple(Visit(day(ago), fac, dept, inp) for ago, fac, dept, inp in p.visits),
        dispensings=dispensed,
        medications=meds,
        surgeries=tuple(Surgery(day(ago), proc, fac) for ago, proc, fac in p.surgeries),
        treatments=tuple(Treatment(day(ago), desc, fac) for ago, desc, fac in p.treatments),
        dialyses=dialyses,
        last_checkup=None if p.checkup_ago is None else day(p.checkup_ago),
        allergies=p.allergies,
    )
