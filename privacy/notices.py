"""The privacy notice, versioned, in Vietnamese and English.

The text lives here, in the code, and not in the translation catalogue: a
consent record names the version the patient read, and that version's words
must stay exactly as they were (a catalogue is edited freely). A changed notice
is a new version added below; ``CURRENT_NOTICE`` is the one patients are asked
to accept. Consent to a purpose outlives a new version of the notice (the
patient agreed to the purpose), but the privacy page asks them to read and
confirm the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.utils.translation import get_language

from privacy.models import Purpose


@dataclass(frozen=True)
class PrivacyNotice:
    version: str
    published: date
    title_vi: str
    title_en: str
    text_vi: str
    text_en: str
    purposes: tuple[str, ...]

    def title(self, language: str | None = None) -> str:
        return self.title_en if _english(language) else self.title_vi

    def text(self, language: str | None = None) -> str:
        return self.text_en if _english(language) else self.text_vi

    def paragraphs(self, language: str | None = None) -> list[str]:
        return [p.strip() for p in self.text(language).split("\n\n") if p.strip()]


def _english(language: str | None) -> bool:
    return (language or get_language() or "vi").startswith("en")


NOTICE_2026_01 = PrivacyNotice(
    version="2026-01",
    published=date(2026, 1, 1),
    title_vi="Thông báo về xử lý dữ liệu cá nhân",
    title_en="Privacy notice",
    text_vi="""\
Mạng lưới khám chữa bệnh từ xa (các cơ sở y tế chăm sóc bạn và đơn vị vận hành dịch vụ) \
xử lý dữ liệu cá nhân của bạn theo Luật Bảo vệ dữ liệu cá nhân số 91/2025/QH15 và \
Nghị định 356/2025/NĐ-CP. Dữ liệu sức khỏe là dữ liệu cá nhân nhạy cảm.

Dữ liệu được xử lý: họ tên, ngày sinh, giới tính, số thẻ bảo hiểm y tế, nơi ở, số điện \
thoại; lịch hẹn, buổi khám qua video (ghi chú, tóm tắt, ảnh chụp, bản ghi hình nếu bạn \
đồng ý), chuyển tuyến, tin nhắn với nhân viên y tế; nhật ký những ai đã xem hồ sơ của bạn.

Mục đích, mỗi mục bạn có thể đồng ý hoặc rút lại riêng: (1) khám và chăm sóc qua dịch vụ \
từ xa; (2) ghi hình buổi khám qua video, mỗi người trong buổi khám cũng phải đồng ý tại \
chỗ; (3) chia sẻ hồ sơ với cơ sở y tế chưa từng chăm sóc bạn khi bạn được chuyển tuyến \
đến đó; (4) thảo luận ca bệnh của bạn trong các buổi hội chẩn đào tạo giữa bác sĩ hướng dẫn \
và bác sĩ tuyến dưới.

Trường hợp cấp cứu, khi tính mạng hoặc sức khỏe của bạn bị đe dọa, hồ sơ được chia sẻ với \
nơi tiếp nhận chuyển tuyến cấp cứu mà không cần sự đồng ý, và việc này được ghi vào nhật \
ký truy cập.

Quyền của bạn: rút lại sự đồng ý bất cứ lúc nào (không ảnh hưởng việc xử lý trước đó); \
tải về dữ liệu của mình; yêu cầu chỉnh sửa, hạn chế xử lý hoặc xóa dữ liệu. Yêu cầu được \
điều phối viên xử lý trong thời hạn ghi trên trang "Dữ liệu và quyền riêng tư".

Lưu trữ: hồ sơ bệnh án được lưu ít nhất 10 năm theo Luật Khám bệnh, chữa bệnh 2023 và \
Thông tư 32/2023/TT-BYT, kể cả khi bạn yêu cầu xóa; trong thời gian đó hồ sơ bị hạn chế, \
không dùng cho mục đích mới. Thông tin liên lạc và tài khoản được xóa khi bạn yêu cầu.

Chỉ những người đang chăm sóc bạn mới xem được hồ sơ; mỗi lần xem đều được ghi lại và có \
trong dữ liệu bạn tải về.""",
    text_en="""\
The remote examination network (the health facilities that care for you and the \
operator of the service) processes your personal data under the Personal Data \
Protection Law 91/2025/QH15 and Decree 356/2025/ND-CP. Health data is sensitive \
personal data.

Data processed: your name, date of birth, sex, health insurance number, address and \
phone number; appointments, video visits (notes, summaries, snapshots, recordings if \
you agree), referrals, messages with health workers; a log of who opened your record.

Purposes, each of which you may agree to or withdraw separately: (1) examination and \
care through the remote service; (2) recording of video visits, to which everyone in \
the visit must also agree at the time; (3) sharing your record with a facility that \
has not cared for you before, when you are referred there; (4) discussing your case \
in mentoring case conferences between mentor doctors and doctors at lower levels.

In an emergency, when your life or health is at risk, your record is shared with the \
facility that receives the emergency referral without consent, and this is written \
to the access log.

Your rights: withdraw consent at any time (this does not affect processing before); \
download your data; ask us to correct, restrict or delete it. A coordinator handles \
each request by the deadline shown on the "My data & privacy" page.

Retention: medical records are kept for at least 10 years under the Law on Medical \
Examination and Treatment 2023 and Circular 32/2023/TT-BYT, also when you ask for \
deletion; during that time they are restricted and not used for anything new. Contact \
details and your account are deleted when you ask.

Only the people caring for you can open your record; every opening is logged and is \
part of the data you download.""",
    purposes=(
        Purpose.CARE.value,
        Purpose.RECORDING.value,
        Purpose.REFERRAL_SHARING.value,
        Purpose.CASE_DISCUSSION.value,
    ),
)

NOTICES: dict[str, PrivacyNotice] = {n.version: n for n in (NOTICE_2026_01,)}
CURRENT_NOTICE = NOTICE_2026_01


def notice_get(version: str) -> PrivacyNotice | None:
    return NOTICES.get(version)
