"""Reference data the service cannot run without: loaded by a migration into every database."""

from __future__ import annotations

# (code, Vietnamese name, English name)
SPECIALTIES: list[tuple[str, str, str]] = [
    ("general-practice", "Y học gia đình / Đa khoa", "General practice"),
    ("internal-medicine", "Nội khoa", "Internal medicine"),
    ("cardiology", "Tim mạch", "Cardiology"),
    ("respiratory", "Hô hấp", "Respiratory medicine"),
    ("gastroenterology", "Tiêu hóa", "Gastroenterology"),
    ("endocrinology", "Nội tiết", "Endocrinology"),
    ("nephrology", "Thận - Tiết niệu", "Nephrology and urology"),
    ("neurology", "Thần kinh", "Neurology"),
    ("infectious-disease", "Truyền nhiễm", "Infectious diseases"),
    ("pediatrics", "Nhi khoa", "Paediatrics"),
    ("obstetrics", "Sản phụ khoa", "Obstetrics and gynaecology"),
    ("general-surgery", "Ngoại khoa", "General surgery"),
    ("orthopedics", "Chấn thương chỉnh hình", "Orthopaedics and trauma"),
    ("oncology", "Ung bướu", "Oncology"),
    ("emergency", "Cấp cứu", "Emergency medicine"),
    ("intensive-care", "Hồi sức tích cực", "Intensive care"),
    ("dermatology", "Da liễu", "Dermatology"),
    ("ophthalmology", "Mắt", "Ophthalmology"),
    ("ent", "Tai Mũi Họng", "Ear, nose and throat"),
    ("psychiatry", "Tâm thần", "Psychiatry"),
    ("traditional-medicine", "Y học cổ truyền", "Traditional medicine"),
    ("radiology", "Chẩn đoán hình ảnh", "Radiology"),
    ("rehabilitation", "Phục hồi chức năng", "Rehabilitation"),
    ("tuberculosis", "Lao và bệnh phổi", "Tuberculosis and lung disease"),
]


def reference_data_load(*, Province, LegacyProvince, Commune, Specialty) -> None:
    """Load provinces, the 63->34 mapping, communes and specialties; skip what exists.

    Takes the model classes so the data migration can pass its historical models.
    """
    from telehealth import geodata

    existing = set(Province.objects.values_list("code", flat=True))
    Province.objects.bulk_create(
        [
            Province(
                code=row.code,
                name=row.name,
                short_name=row.short_name,
                is_city=row.is_city,
                latitude=row.latitude,
                longitude=row.longitude,
            )
            for row in geodata.provinces()
            if row.code not in existing
        ]
    )
    by_code = {p.code: p for p in Province.objects.all()}

    existing = set(LegacyProvince.objects.values_list("code", flat=True))
    LegacyProvince.objects.bulk_create(
        [
            LegacyProvince(
                code=row.code,
                name=row.name,
                short_name=row.short_name,
                province=by_code[row.province_code],
            )
            for row in geodata.legacy_provinces()
            if row.code not in existing
        ]
    )

    existing = set(Commune.objects.values_list("code", flat=True))
    Commune.objects.bulk_create(
        [
            Commune(
                code=row.code,
                name=row.name,
                kind=row.kind,
                province=by_code[row.province_code],
                latitude=row.latitude,
                longitude=row.longitude,
                area_km2=row.area_km2,
            )
            for row in geodata.communes()
            if row.code not in existing
        ],
        batch_size=1000,
    )

    existing = set(Specialty.objects.values_list("code", flat=True))
    Specialty.objects.bulk_create(
        [
            Specialty(code=code, name_vi=name_vi, name_en=name_en)
            for code, name_vi, name_en in SPECIALTIES
            if code not in existing
        ]
    )
