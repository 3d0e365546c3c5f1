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
