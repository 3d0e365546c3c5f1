from telehealth.models import Commune, LegacyProvince, Province, Specialty


def test_reference_data_is_loaded_by_the_migration(db):
    assert Province.objects.count() == 34
    assert Province.objects.filter(is_city=True).count() == 6
    assert LegacyProvince.objects.count() == 63
    assert Commune.objects.count() == 3321
    assert Specialty.objects.filter(code="cardiology").exists()
